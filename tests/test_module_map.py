"""Maps and pictures of module functions, with the branches of .cold/.part pieces (KP405) drawn."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import probelint
from probelint import picture
from tests.conftest import ROOT

VMLINUX = """
    .text
FUNC kfree
    FENTRY
    ret
"""
MODULE = """
    .text
FUNC mod_fn
    FENTRY
    push %rbp
    mov %rsp, %rbp
    test %edi, %edi
    jne mod_fn.cold
    pop %rbp
    ret
FUNC mod_fn.cold
    xor %eax, %eax
    jmp mod_fn+7
    .section .modinfo
    .asciz "name=mymod"
"""


def test_picture_of_a_module_function_draws_the_cold_piece_branch(build_kernel, tmp_path):
    kernel = probelint.load_kernel([build_kernel(VMLINUX), build_kernel(MODULE, module=True)])
    module = kernel.modules[0]
    sym = module.symbols.lookup_name("mod_fn")
    results = probelint.check(kernel, ["mymod:mod_fn+0x5"], hints="never")
    drawn = picture.build(kernel, sym, list(results), module)
    assert drawn.image is module and [c.offset for c in drawn.cells][:3] == [0, 5, 6]
    assert drawn.piece_branches == (("mod_fn.cold+0x2", 7),)
    (probe,) = drawn.probes
    assert results[0].verdict.optimized and probe.piece_blockers == (("mod_fn.cold+0x2", 7),)  # KP405's case
    svg = picture.render_svg(drawn)
    assert 'class="arc blocker piece"' in svg and 'data-source="mod_fn.cold+0x2"' in svg


def test_map_command_takes_modules(build_kernel, tmp_path):
    vmlinux, ko = build_kernel(VMLINUX), build_kernel(MODULE, module=True)
    out = tmp_path / "m.probemap.gz"
    proc = subprocess.run([sys.executable, "-m", "probelint", "map", "--cache-dir", str(tmp_path / "c"), str(vmlinux),
                           str(ko), "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in gzip.decompress(out.read_bytes()).decode().splitlines()]
    assert {r["f"] for r in records} == {"mod_fn", "mod_fn.cold"}
    svg = tmp_path / "f.svg"
    proc = subprocess.run([sys.executable, "-m", "probelint", "map", "--cache-dir", str(tmp_path / "c"), str(vmlinux),
                           str(ko), "--function", "mymod:mod_fn", "--svg", str(svg)], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "arc piece" in svg.read_text()


def test_a_module_alone_is_mapped_as_not_checked_where_it_is(build_kernel, tmp_path):
    """Without the vmlinux a thunk jump leaves the optimization unknown (KP412): the map's class is
    U ("optimization not checked"), never an int3 probe the kernel might optimize, and the picture's
    legend names it; a vmlinux's map has no such class."""
    from tests.rules.test_kp412_kernel_not_given import SOURCE  # `thunked` jumps to a retpoline thunk

    ko = build_kernel(SOURCE, module=True)
    out = tmp_path / "m.probemap.gz"
    proc = subprocess.run([sys.executable, "-m", "probelint", "map", "--no-cache", str(ko), "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("  optimization not checked") for line in lines)
    assert not any(line.startswith("  not checked") for line in lines)  # no probe left wholly unchecked
    records = {r["f"]: r for r in map(json.loads, gzip.decompress(out.read_bytes()).decode().splitlines())}
    assert {cls for _, cls, _ in records["thunked"]["b"]} == {"F", "U"}
    assert "U" not in {cls for _, cls, _ in records["tail_call"]["b"]}
    query = subprocess.run([sys.executable, "-m", "probelint", "map", "--query", "thunked+0x5", str(out)],
                           capture_output=True, text=True, cwd=ROOT)
    assert query.stdout.strip() == "thunked+0x5: optimization not checked (KP412)"
    kernel = probelint.load_kernel([ko])
    module = kernel.modules[0]
    svg = picture.render_svg(picture.build(kernel, module.symbols.lookup_name("thunked"), [], module))
    assert 'class="swatch unknown"' in svg and "optimization not checked" in svg
    with_vmlinux = probelint.load_kernel([build_kernel(VMLINUX)])
    assert with_vmlinux.vmlinux is not None
    vmlinux_svg = picture.render_svg(picture.build(with_vmlinux, with_vmlinux.vmlinux.symbols.lookup_name("kfree"), []))
    assert 'class="swatch unknown"' not in vmlinux_svg and 'class="swatch unchecked"' not in vmlinux_svg
