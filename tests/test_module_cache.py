"""Modules as fast as the vmlinux: their facts in the build-id index, their relocations applied to
the bytes read only, and any number of them laid out side by side in the module area."""

from __future__ import annotations

import itertools
import subprocess

import pytest

import probelint
from probelint.image.facts import FunctionFacts
from probelint.image.kernel import LazyInsns, Module
from probelint.image.module_layout import MODULE_BASE, ModuleSymbols
from probelint.image.relocs import RelocTable

MODULE = """
    .text
FUNC mod_read
    FENTRY
    push %rbp
    mov %rsp, %rbp
    call mod_helper
    call vmlinux_func
    pop %rbp
    ret
FUNC mod_helper
    FENTRY
    xor %eax, %eax
    cmp $3, %edi
    je 1f
    mov $1, %eax
1:  ret
    .section .rodata
    .quad mod_read
"""
VMLINUX = """
    .text
FUNC vmlinux_func
    FENTRY
    ret
"""
PROBES = ["k:mod_read+0x5", "k:mod_read+0x6", "k:mod_read+0x9", "k:mod_helper+0x5", "k:mod_helper+0x7", "mod_helper"]


def _ko(build_kernel, tmp_path, name: str = "k") -> str:
    """The fixture module linked with a build-id, as kbuild's `ld -r` links every .ko."""
    ko = tmp_path / f"{name}.ko"
    subprocess.run(["ld", "-r", "--build-id=sha1", "-o", ko, build_kernel(MODULE, module=True)], check=True)
    return str(ko)


def _verdicts(results):
    return [(r.verdict.registers, r.verdict.errno, r.verdict.optimized, r.verdict.ftrace,
             [f.message for f in r.findings]) for r in results]


def test_warm_module_run_takes_symbols_and_facts_from_the_index(build_kernel, tmp_path, monkeypatch):
    images = [build_kernel(VMLINUX), _ko(build_kernel, tmp_path)]
    kernel = probelint.load_kernel(images, cache_dir=tmp_path / "cache", cache=True)
    cold = probelint.check(kernel, PROBES)
    module = kernel.modules[0]
    module.save_facts()
    assert len(list((tmp_path / "cache" / "index").glob("*.index"))) == 2  # the vmlinux's and the module's

    def fail(*args, **kwargs):
        raise AssertionError("a warm run must not rebuild the module's symbols or walk its functions")

    monkeypatch.setattr(ModuleSymbols, "__init__", fail)
    monkeypatch.setattr(FunctionFacts, "of", fail)
    # the relocated text comes from the facts: no relocation resolved (nor the .symtab parsed)
    monkeypatch.setattr(RelocTable, "within", fail)
    kernel = probelint.load_kernel(images, cache_dir=tmp_path / "cache", cache=True)
    assert _verdicts(probelint.check(kernel, PROBES)) == _verdicts(cold)
    fn = kernel.modules[0].function(kernel.modules[0].symbols.lookup_name("mod_read"))
    assert isinstance(fn.insns, LazyInsns)


def test_module_index_is_keyed_by_the_vmlinux_and_the_base(build_kernel, tmp_path):
    """The module's relocated bytes depend on where it lies and on the vmlinux's addresses."""
    ko = _ko(build_kernel, tmp_path)
    cache = tmp_path / "cache"
    probelint.load_kernel([build_kernel(VMLINUX), ko], cache_dir=cache, cache=True)
    probelint.load_kernel([ko], cache_dir=cache, cache=True)
    probelint.load_kernel([ko, ko], cache_dir=cache, cache=True)  # the second one lies further on
    assert len(list((cache / "index").glob("*.index"))) == 1 + 3


def test_many_modules_lie_one_after_another(build_kernel, tmp_path):
    """The kernel packs modules into its 1 GiB module area: eight are laid out without overlap
    (a 256 MiB slot each ran past 2**64 from the fifth image)."""
    kos = [_ko(build_kernel, tmp_path, f"m{k}") for k in range(8)]
    kernel = probelint.load_kernel([build_kernel(VMLINUX), *kos])
    spans = [(m.layout.text_start, m.layout.end) for m in kernel.modules]
    assert spans[0][0] == MODULE_BASE and all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))
    assert spans[-1][1] < 1 << 64
    (result,) = probelint.check(kernel, ["m7:mod_helper+0x5"])
    assert result.verdict.registers


@pytest.mark.kernel
def test_reads_relocate_as_the_whole_section_does(debian):
    """Relocations applied to a few bytes (bisected) equal those applied to the whole section."""
    import random

    from probelint.image.relocs import _SIZES, apply_relocations

    image = probelint.load_kernel([debian.vmlinux, debian.xfs]).modules[0]
    assert isinstance(image, Module)
    text = image.elf.section(".text")
    table = RelocTable(image.elf, image.layout.section_address, image.vmlinux.raw_symbol)
    whole = apply_relocations(image.elf.section_bytes(text), 0, image.section_address(text),
                              table.for_section(text.index))
    rng = random.Random(5)
    for _ in range(300):
        start = rng.randrange(text.size - 64)
        size = rng.randrange(1, 64)
        got = image.read(image.section_address(text) + start, size)
        # a field cut by the read's start or end is left unpatched, as before
        if not any(r.offset < start or r.offset + _SIZES.get(r.type, 0) > start + size
                   for r in table.within(text.index, start - 8, start + size)
                   if r.offset + _SIZES.get(r.type, 0) > start):
            assert got == whole[start : start + size], hex(start)
