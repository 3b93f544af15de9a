"""A loadable module (.ko, ET_REL) laid out and symbolised the way the kernel does it.

kernel/module/main.c `layout_sections`: core text is every SHF_ALLOC|SHF_EXECINSTR section
whose name does not start with ``.init``, in section-header order, each aligned to its
``sh_addralign``; with STRICT_MODULE_RWX the text size is rounded up to a page. Read-only data,
ro-after-init and writable data follow in the same block (x86 has no separate data layout in
6.1). The module's kallsyms after init (kernel/module/kallsyms.c `find_kallsyms_symbol`,
`is_core_symbol`): defined, named symbols in allocated non-init sections; best = greatest value
<= addr with ties going to the first in .symtab order; size = next greater value, capped at the
end of core text.

Addresses here are those of a module loaded at `MODULE_BASE`; the real load address changes from
boot to boot, which is why probes in modules are reported as ``MOD:SYM+OFF``.
"""

from __future__ import annotations

import bisect
from array import array
from typing import Any, NamedTuple

from probelint.image.cache_format import IndexFormatError, field, joined_names, name_list, typed_array
from probelint.image.elf import SHN_LORESERVE, SHN_UNDEF, ElfFile, ElfSection
from probelint.image.kallsyms import KSym, SymbolTable, nm_type

__all__ = ["MODULE_BASE", "ModuleLayout", "ModuleSymbols", "is_init_section", "layout_module"]

MODULE_BASE = 0xFFFF_FFFF_C000_0000  # MODULES_VADDR on x86-64 without KASLR
PAGE_SIZE = 4096

# (required flags, forbidden flags) per pass, kernel/module/main.c layout_sections masks[]
_SHF_ALLOC, _SHF_WRITE, _SHF_EXECINSTR, _SHF_RO_AFTER_INIT = 0x2, 0x1, 0x4, 0x00200000
_PASSES = ((_SHF_EXECINSTR | _SHF_ALLOC, 0), (_SHF_ALLOC, _SHF_WRITE), (_SHF_RO_AFTER_INIT | _SHF_ALLOC, 0),
           (_SHF_WRITE | _SHF_ALLOC, 0), (_SHF_ALLOC, 0))


def is_init_section(name: str) -> bool:
    """module_init_layout_section(): ``.init*`` (``.exit*`` stays: MODULE_UNLOAD=y)."""
    return name.startswith(".init")


def _align(value: int, align: int) -> int:
    align = max(align, 1)
    return (value + align - 1) // align * align


class ModuleLayout(NamedTuple):
    """Where each allocated section of the module lands (section index -> address)."""

    section_address: dict[int, int]
    text_start: int
    text_end: int  # page-aligned end of core text: the cap on the last function's size
    init_text_start: int
    init_text_end: int
    end: int  # page-aligned end of the init part: where the next module's layout may begin


def _place(elf: ElfFile, placed: dict[int, int], base: int, init: bool) -> tuple[int, int]:
    """Place the init (or core) sections in layout_sections' pass order; returns (size, text size)."""
    size = text_size = 0
    for n, (need, forbid) in enumerate(_PASSES):
        for sec in elf.sections:
            if (sec.flags & need) != need or sec.flags & forbid or sec.index in placed:
                continue
            if is_init_section(sec.name) != init:
                continue
            size = _align(size, sec.align)
            placed[sec.index] = base + size
            size += sec.size
        if not init:  # strict_align(): with STRICT_MODULE_RWX each core part ends on a page
            size = _align(size, PAGE_SIZE)
        if n == 0:
            text_size = size
    return size, text_size


def layout_module(elf: ElfFile, base: int = MODULE_BASE) -> ModuleLayout:
    placed: dict[int, int] = {}
    core_size, core_text = _place(elf, placed, base, init=False)
    init_base = _align(base + core_size, PAGE_SIZE)
    init_size, init_text = _place(elf, placed, init_base, init=True)
    return ModuleLayout(placed, base, base + core_text, init_base, init_base + init_text,
                        _align(init_base + init_size, PAGE_SIZE))


class ModuleSymbols(SymbolTable):
    """The module's core kallsyms with `find_kallsyms_symbol` / `find_kallsyms_symbol_value`;
    with `coming`, its kallsyms while MODULE_STATE_COMING: the whole symtab, the init sections'
    symbols too (do_init_module switches `mod->kallsyms` to the core table only after init)."""

    coming = False

    def __init__(self, elf: ElfFile, layout: ModuleLayout, *, coming: bool = False) -> None:
        self.layout = layout
        self.coming = coming
        entries = []
        for sym in elf.symbols()[1:]:
            if sym.shndx == SHN_UNDEF or sym.shndx >= SHN_LORESERVE or sym.shndx >= len(elf.sections):
                continue
            if not sym.name or sym.shndx not in layout.section_address:
                continue
            sec: ElfSection = elf.sections[sym.shndx]
            if is_init_section(sec.name) and not coming:
                continue
            entries.append((layout.section_address[sym.shndx] + sym.value, sym.index, sym.name, nm_type(sym, elf)))
        # Sorted by address, then .symtab order: the first of equal values wins, as in the kernel.
        entries.sort()
        self.addresses = [e[0] for e in entries]
        self.names = [e[2] for e in entries]
        self.types = [e[3] for e in entries]
        first: dict[str, tuple[int, int]] = {}
        for pos, (_, index, name, _) in enumerate(entries):
            best = first.get(name)
            if best is None or index < best[0]:
                first[name] = (index, pos)
        self._first_by_name = {name: pos for name, (_, pos) in first.items()}
        self._index()

    def to_index(self) -> dict[str, Any]:
        return {"names": joined_names(self.names), "addresses": array("Q", self.addresses),
                "types": "".join(self.types), "first": array("I", self._first_by_name.values())}

    @classmethod
    def from_index(cls, data: dict[str, Any], layout: ModuleLayout) -> ModuleSymbols:
        """The table as `to_index` kept it; IndexFormatError unless every part fits the others."""
        self = cls.__new__(cls)
        self.layout = layout
        self.names = name_list(data, "names")
        self.addresses = typed_array(data, "addresses", "Q", len(self.names))
        self.types = field(data, "types", str)
        first = typed_array(data, "first", "I")
        if len(self.types) != len(self.names) or (first and max(first) >= len(self.names)):
            raise IndexFormatError("module symbols: parts of different lengths")
        self._first_by_name = {self.names[pos]: pos for pos in first}
        self._index()
        return self

    def _region(self, address: int) -> tuple[int, int, bool] | None:
        """(start, end, is text) of the part of the module's memory holding `address` whose
        symbols kallsyms finds (module_address_lookup: text and, with KALLSYMS_ALL, data); init
        text and data only while the module is COMING (freed once it is live)."""
        parts = self.__dict__.get("_parts")  # asked for every lookup: built once
        if parts is None:
            layout = self.layout
            parts = [(layout.text_start, layout.text_end, True), (layout.text_end, layout.init_text_start, False)]
            if self.coming:
                parts += [(layout.init_text_start, layout.init_text_end, True),
                          (layout.init_text_end, layout.end, False)]
            self.__dict__["_parts"] = parts
        for part in parts:
            if part[0] <= address < part[1]:
                return part
        return None

    def lookup(self, address: int) -> KSym | None:
        """find_kallsyms_symbol() for an address in the module's memory."""
        region = self._region(address)
        sym = self._containing(address) if region is not None else None
        return sym if sym is not None and region is not None and sym.address >= region[0] else None

    def _entry(self, pos: int) -> KSym:
        start = self.addresses[pos]
        nxt = bisect.bisect_right(self.addresses, start)
        region = self._region(start)  # a function's size is capped at the end of its text region
        cap = region[1] if region is not None and region[2] else self.layout.text_end
        end = min(self.addresses[nxt], cap) if nxt < len(self.addresses) else cap
        return KSym(self.names[pos], start, max(end - start, 0), self.types[pos])

    def lookup_name(self, name: str) -> KSym | None:
        pos = self._first_by_name.get(name)
        if pos is None:
            return None
        sym = self._first_alias(pos)
        return KSym(name, sym.address, sym.size, self.types[pos])
