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
import itertools
import struct
from array import array
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
    """All RELA relocations of a module, by the index of the section they patch. A section's
    entries are unpacked when it is first read, and resolved only for the fields a read covers: a
    warm run reads a few functions of a .text holding hundreds of thousands of relocations."""

    def __init__(self, elf: ElfFile, section_address: dict[int, int],
                 resolve_import: Callable[[str], int | None] = lambda name: None) -> None:
        self._elf = elf
        self._section_address = section_address
        self._resolve_import = resolve_import
        self._rela = {sec.info: sec for sec in elf.sections
                      if sec.type == 4 and sec.info < len(elf.sections)}  # SHT_RELA, by patched section
        for sec in self._rela.values():  # a torn file is an error when opened, not when a read reaches it
            if sec.size % _RELA.size:
                raise InputError(elf.path, f"corrupt ELF: section {sec.name} holds {sec.size} bytes, "
                                           f"not a whole number of {_RELA.size}-byte relocations")
        self._raw: dict[int, tuple[array, array, array]] = {}  # (offsets, infos, addends), by offset
        self._by_section: dict[int, list[Reloc]] = {}
        self._imports: dict[str, int | None] = {}

    def _entries(self, index: int) -> tuple[array, array, array]:
        raw = self._raw.get(index)
        if raw is None:
            sec = self._rela.get(index)
            data = self._elf.section_bytes(sec) if sec is not None else b""
            words = array("Q", data)
            offsets, infos, addends = words[0::3], words[1::3], array("q", words[2::3].tobytes())
            if any(a > b for a, b in itertools.pairwise(offsets)):  # ld writes them in order; a stable sort if not
                order = sorted(range(len(offsets)), key=offsets.__getitem__)
                offsets, infos = array("Q", (offsets[k] for k in order)), array("Q", (infos[k] for k in order))
                addends = array("q", (addends[k] for k in order))
            raw = self._raw[index] = (offsets, infos, addends)
        return raw

    def _resolved(self, index: int, lo: int, hi: int) -> list[Reloc]:
        """Entries lo..hi of section `index`, resolved to S + A in the module layout."""
        offsets, infos, addends = self._entries(index)
        symbols, placed = self._elf.symbols(), self._section_address
        out = []
        for k in range(lo, hi):
            info, addend = infos[k], addends[k]
            sym = symbols[info >> 32] if (info >> 32) < len(symbols) else None
            target = None
            if sym is not None and sym.shndx != SHN_UNDEF and sym.shndx in placed:
                target = placed[sym.shndx] + sym.value + addend
            elif sym is not None and sym.shndx == SHN_UNDEF and sym.name:
                imported = self._imports.get(sym.name, -1)
                if imported == -1:
                    imported = self._imports[sym.name] = self._resolve_import(sym.name)
                target = None if imported is None else imported + addend
            out.append(Reloc(offsets[k], info & 0xFFFFFFFF, target, sym.name if sym else ""))
        return out

    def for_section(self, index: int) -> list[Reloc]:
        found = self._by_section.get(index)
        if found is None:
            found = self._by_section[index] = self._resolved(index, 0, len(self._entries(index)[0]))
        return found

    def within(self, index: int, start: int, end: int) -> list[Reloc]:
        """The relocations of section `index` whose field starts in [start, end): a read of a few
        bytes patches a few fields."""
        offsets = self._entries(index)[0]
        return self._resolved(index, bisect.bisect_left(offsets, start), bisect.bisect_left(offsets, end))

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
