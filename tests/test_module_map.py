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
