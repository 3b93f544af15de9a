"""Module relocations, resolved against the kernel's own section layout.

In a .ko every cross-section reference (table entries pointing into .text, calls to other
sections) is a zero field plus a RELA entry. The kernel applies them after `layout_sections`
(arch/x86/kernel/module.c `apply_relocate_add`); we resolve each to *target address = S + A* in
our emulation of that layout, so table entries become addresses in the same space as the
module's kallsyms. (CLE, angr's loader, lays sections out its own way, takes ~5 s on xfs.ko and
does not implement R_X86_64_PC64, which every `__jump_table` key uses; see docs/design.md.)
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable
from typing import NamedTuple

from probelint.errors import InputError
from probelint.image.elf import SHN_UNDEF, ElfFile

__all__ = ["Reloc", "RelocTable", "apply_relocations"]

_RELA = struct.Struct("<QQq")
R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32, R_X86_64_32S, R_X86_64_PC64 = 1, 2, 4, 10, 11, 24
_SIZES = {R_X86_64_64: 8, R_X86_64_PC32: 4, R_X86_64_PLT32: 4, R_X86_64_32: 4, R_X86_64_32S: 4, R_X86_64_PC64: 8}
_PC_RELATIVE = frozenset({R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_PC64})


class Reloc(NamedTuple):
    offset: int  # in the section the relocation applies to
    type: int
    target: int | None  # S + A in the module layout; None for an undefined (imported) symbol
    symbol: str


class RelocTable:
    """All RELA relocations of a module, by the index of the section they patch."""

    def __init__(self, elf: ElfFile, section_address: dict[int, int],
                 resolve_import: Callable[[str], int | None] = lambda name: None) -> None:
        self._by_section: dict[int, list[Reloc]] = {}
        self._offsets: dict[int, list[int]] = {}  # each section's sorted relocation offsets, for bisecting
        symbols = elf.symbols()
        for sec in elf.sections:
            if sec.type != 4 or sec.info >= len(elf.sections):  # SHT_RELA
                continue
            data = elf.section_bytes(sec)
            if len(data) % _RELA.size:
                raise InputError(elf.path, f"corrupt ELF: section {sec.name} holds {len(data)} bytes, "
                                           f"not a whole number of {_RELA.size}-byte relocations")
            out = []
            for offset, info, addend in _RELA.iter_unpack(data):
                sym = symbols[info >> 32] if (info >> 32) < len(symbols) else None
                target = None
                if sym is not None and sym.shndx != SHN_UNDEF and sym.shndx in section_address:
                    target = section_address[sym.shndx] + sym.value + addend
                elif sym is not None and sym.shndx == SHN_UNDEF and sym.name:
                    imported = resolve_import(sym.name)
                    target = None if imported is None else imported + addend
                out.append(Reloc(offset, info & 0xFFFFFFFF, target, sym.name if sym else ""))
            self._by_section[sec.info] = sorted(out, key=lambda r: r.offset)

    def for_section(self, index: int) -> list[Reloc]:
        return self._by_section.get(index, [])

    def within(self, index: int, start: int, end: int) -> list[Reloc]:
        """The relocations of section `index` whose field starts in [start, end): a read of a few
        bytes patches a few fields, not the thousands of a module's .text."""
        offsets = self._offsets.get(index)
        if offsets is None:
            offsets = self._offsets[index] = [r.offset for r in self.for_section(index)]
        return self.for_section(index)[bisect.bisect_left(offsets, start) : bisect.bisect_left(offsets, end)]

    def targets(self, index: int) -> dict[int, int | None]:
        """Section offset -> resolved target, for reading table fields."""
        return {r.offset: r.target for r in self.for_section(index)}


def apply_relocations(data: bytes, start: int, section_base: int, relocs: list[Reloc]) -> bytes:
    """Patch `data` (section bytes from offset `start`) the way apply_relocate_add() would;
    imported symbols (unknown here) stay zero, which changes no instruction length."""
    buf = bytearray(data)
    for r in relocs:
        size = _SIZES.get(r.type)
        pos = r.offset - start
        if size is None or r.target is None or pos < 0 or pos + size > len(buf):
            continue
        value = r.target - (section_base + r.offset) if r.type in _PC_RELATIVE else r.target
        buf[pos : pos + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return bytes(buf)
