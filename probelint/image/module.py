"""A loadable module (.ko, ET_REL) as loaded beside a vmlinux: laid out where the kernel's
allocator would put it (image/module_layout.py), its sections relocated (image/relocs.py), its
kallsyms those of kernel/module/kallsyms.c, its imported symbols resolved against the vmlinux."""

from __future__ import annotations

import bisect
from functools import cached_property
from typing import Any

from probelint.arch.x86.cpu import CpuProfile, feature_bits
from probelint.arch.x86.patching import patch_live_text, patches_retpolines
from probelint.image.base import ImageBase, IndexedParts, site_in
from probelint.image.blacklist import Blacklist, module_areas
from probelint.image.cache import IndexCache
from probelint.image.cache_format import field, joined_names, name_list
from probelint.image.elf import ElfFile, ElfSection, modname_of_file
from probelint.image.module_layout import MODULE_BASE, ModuleSymbols, is_init_section, layout_module
from probelint.image.relocs import R_X86_64_PC32, R_X86_64_PLT32, RelocTable, apply_relocations
from probelint.image.view import KernelImage, TableSource

__all__ = ["Module", "modinfo", "module_name"]

_PC32 = (R_X86_64_PC32, R_X86_64_PLT32)
# What 6.1's [__indirect_thunk_start, __indirect_thunk_end] holds (arch/x86/lib/retpoline.S,
# .text..__x86.indirect_thunk and .text..__x86.return_thunk): a jump there is an indirect jump to
# insn_is_indirect_jump, which only the vmlinux's bounds tell.
_THUNKS = ("__x86_indirect_", "__x86_return_thunk", "its_return_thunk", "retbleed_", "srso_", "entry_untrain_ret",
           "zen_untrain_ret")


class Module(ImageBase):
    """One module laid out from `base` in the module area, loaded into `vmlinux` if known. With
    `cache`, its whole-file facts and decoded functions are kept in the build-id index under the
    module's build-id, the vmlinux's and `base`: relocations resolve against both."""

    is_module = True

    def __init__(self, elf: ElfFile, profile: CpuProfile, vmlinux: KernelImage | None = None,
                 base: int = MODULE_BASE, cache: IndexCache | None = None) -> None:
        self.layout = layout_module(elf, base)
        self.name = module_name(elf)
        self._vmlinux = vmlinux
        # MODULE_STATE_COMING, as a probe defined before the load meets the module
        # (trace_kprobe_module_callback): its init symbols and init text are there, its ftrace
        # records too, and its kprobe blacklist not yet (kprobes_module_callback runs after)
        self.coming = False
        super().__init__(elf, profile)
        self.relocations  # noqa: B018 -- checked when opened: a torn .rela section is an input error
        if cache is not None:
            self._use_index(cache, self._index_key())

    _INDEXED = ("core_symbols", *ImageBase._INDEXED, "init_symbols")

    def _to_index(self) -> dict[str, Any]:
        return {**super()._to_index(), "symbols": self.core_symbols.to_index(),
                "init_symbols": joined_names(sorted(self.init_symbols))}

    @classmethod
    def _from_index(cls, tree: Any) -> IndexedParts:
        indexed, sites, tables = super()._from_index(tree)
        indexed["_symbols_index"] = field(tree, "symbols", dict)  # made a table once the layout is known
        indexed["init_symbols"] = frozenset(name_list(tree, "init_symbols"))
        return indexed, sites, tables

    def _index_key(self) -> str | None:
        own = self.elf.build_id()
        if own is None:
            return None  # nothing tells this file from an edited one
        kernel = self._vmlinux.elf.build_id() if isinstance(self._vmlinux, ImageBase) else None
        return f"{own}{kernel or '0'}{self.layout.text_start:x}"

    def _run_time_address(self, sec: ElfSection) -> int | None:
        return self.layout.section_address.get(sec.index)

    def section_address(self, sec: ElfSection) -> int:
        return self.layout.section_address[sec.index]

    @property
    def vmlinux(self) -> KernelImage | None:
        return self._vmlinux

    @property
    def symbols(self) -> ModuleSymbols:
        """The module's kallsyms: the core table once it is live, the whole symtab while COMING."""
        return self.coming_symbols if self.coming else self.core_symbols

    @cached_property
    def core_symbols(self) -> ModuleSymbols:
        kept = self.__dict__.pop("_symbols_index", None)
        return ModuleSymbols(self.elf, self.layout) if kept is None else ModuleSymbols.from_index(kept, self.layout)

    @cached_property
    def coming_symbols(self) -> ModuleSymbols:
        return ModuleSymbols(self.elf, self.layout, coming=True)

    @cached_property
    def init_ftrace_sites(self) -> list[int]:
        """The fentry sites in init text: recorded by ftrace_module_init, freed after the module's
        init has run (ftrace_free_mem)."""
        return sorted({a for a in self.table_columns("mcount_loc", "addr")[0] if a and self.is_init_text(a)})

    def ftrace_site_in(self, start: int, end: int) -> int | None:
        if self.coming and self.is_init_text(start):
            return site_in(self.init_ftrace_sites, start, end)
        return super().ftrace_site_in(start, end)

    def raw_symbol(self, name: str) -> int | None:
        """Linker-script markers are the vmlinux's: a module has none."""
        return None

    @cached_property
    def relocations(self) -> RelocTable:
        resolve_import = self._vmlinux.raw_symbol if self._vmlinux is not None else lambda name: None
        return RelocTable(self.elf, self.layout.section_address, resolve_import)

    def _relocated(self, data: bytes, start: int, sec: ElfSection) -> bytes:
        relocs = self.relocations.within(sec.index, start, start + len(data))
        return apply_relocations(data, start, self.section_address(sec), relocs) if relocs else data

    def table_source(self, start: str, stop: str, section: str) -> TableSource | None:
        sec = self.elf.section(section)
        if sec is None:
            return None
        return self.section_address(sec), self.elf.section_bytes(sec), self.relocations.targets(sec.index)

    @cached_property
    def blacklist(self) -> Blacklist:
        return Blacklist(self, module_areas(self, lambda sec: sec.index in self.layout.section_address))

    @cached_property
    def version(self) -> str | None:
        return modinfo(self.elf).get("vermagic") or None

    def sites_read(self, lo: int, hi: int) -> str | None:
        """A site of boot-time patching that the bytes [lo, hi) of this module's text meet and
        whose patching needs the vmlinux (module_finalize: apply_paravirt reads pv_ops,
        apply_retpolines the thunk array); None if none. Such a site keeps its length when
        patched, so the boundaries and branches elsewhere in the function do not move (booted
        generic 6.1 and cloud 6.1 with spectre_v2=off, docs/validation-modules.md)."""
        pv, entries = self.paravirt_sites, self.table("parainstructions")
        pos = bisect.bisect_left(pv, (lo - 15, -1))  # a site begins at most one instruction before
        for site, index in pv[pos : bisect.bisect_left(pv, (hi, -1))]:
            if site + max(entries[index]["len"], 5) > lo:
                return f"a paravirt call site at {self.describe(site)}"
        if patches_retpolines(self, feature_bits(self, self.profile)):
            sites = self.retpoline_sites
            for site in sites[bisect.bisect_left(sites, lo - 5) : bisect.bisect_left(sites, hi)]:
                if site + 5 > lo:
                    return f"a retpoline site at {self.describe(site)}"
        return None

    def thunk_jumps(self, start: int, end: int) -> str | None:
        """A jump of the function [start, end) that insn_is_indirect_jump counts only by the
        vmlinux's thunk range or that the vmlinux's thunk array rewrites: a retpoline jump site
        apply_retpolines makes `jmp *%reg`, or a jump left in the live text to a retpoline or
        return thunk. It decides whether any probe of the function is optimized (KP205 reads every
        jump), never whether it registers."""
        if patches_retpolines(self, feature_bits(self, self.profile)):
            sites = self.retpoline_sites
            for site in sites[bisect.bisect_left(sites, start) : bisect.bisect_left(sites, end)]:
                if self.read(site, 1) != b"\xe8":  # a call becomes `call *%reg`: no jump
                    return f"a retpoline jump at {self.describe(site)}"
        sec = self.section_at(start)
        if sec is None:
            return None
        base = self.section_address(sec)
        file_code = self.read(start, end - start)
        live = patch_live_text(self, start, file_code, self.profile)
        for reloc in self.relocations.within(sec.index, start - base + 1, end - base):
            at = base + reloc.offset - start  # the field's offset in the function
            unpatched = live[at : at + 4] == file_code[at : at + 4]
            if not reloc.symbol.startswith(_THUNKS) or reloc.type not in _PC32 or not unpatched:
                continue  # not a thunk, not a rel32, or patched away (a return thunk made ``ret``)
            jcc = at >= 2 and live[at - 2] == 0x0F and 0x80 <= live[at - 1] <= 0x8F
            if jcc or live[at - 1] == 0xE9:
                insn = start + at - (2 if jcc else 1)
                return f"a jump to {reloc.symbol} at {self.describe(insn)}"
        return None

    def has_init_symbol(self, name: str) -> bool:
        """A symbol defined in an ``.init*`` section (dropped from kallsyms after load)."""
        return name in self.init_symbols

    @cached_property
    def init_symbols(self) -> frozenset[str]:
        """The names defined in ``.init*`` sections. Indexed: KP101 asks for every unknown name,
        and a warm run reads no symbol table."""
        sections = self.elf.sections
        return frozenset(s.name for s in self.elf.symbols()
                         if s.name and 0 < s.shndx < len(sections) and is_init_section(sections[s.shndx].name))

    def is_ksym_addr(self, address: int) -> bool:
        """The module's memory (`__module_address`), text and data: its kallsyms decides the rest."""
        return self.layout.text_start <= address < self.layout.end

    def is_core_text(self, address: int) -> bool:
        return self.layout.text_start <= address < self.layout.text_end

    def is_init_text(self, address: int) -> bool:
        return self.layout.init_text_start <= address < self.layout.init_text_end


def modinfo(elf: ElfFile) -> dict[str, str]:
    """The ``key=value`` fields of a module's .modinfo (the first value of a repeated key)."""
    sec = elf.section(".modinfo")
    info: dict[str, str] = {}
    for entry in elf.section_bytes(sec).split(b"\0") if sec is not None else []:
        key, eq, value = entry.decode(errors="replace").partition("=")
        if eq:
            info.setdefault(key, value)
    return info


def module_name(elf: ElfFile) -> str:
    """The name the kernel knows the module by: ``name=`` in .modinfo, else from the file name."""
    name = modinfo(elf).get("name")
    if name:
        return name
    return modname_of_file(elf.path)
