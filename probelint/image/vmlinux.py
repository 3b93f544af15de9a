"""The vmlinux (ET_EXEC) as booted: its kallsyms, the linker-script markers that bound core and
init text and the kernel's areas, its banner, and the whole-file facts kept in the build-id index."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from probelint.arch.x86.cpu import CpuProfile
from probelint.errors import InputError
from probelint.image.base import ImageBase, IndexedParts
from probelint.image.blacklist import Blacklist, vmlinux_areas
from probelint.image.cache import IndexCache
from probelint.image.cache_format import IndexFormatError, field
from probelint.image.elf import ElfFile, ElfSection
from probelint.image.kallsyms import Kallsyms, NameMap, kallsyms_from_nm, nm_entries
from probelint.image.kversion import ConfigInference, KernelConfig, KernelVersion, with_config_file
from probelint.image.symbol_map import SymbolMap
from probelint.image.view import TableSource

__all__ = ["DotConfig", "Vmlinux"]

DotConfig = tuple[str, str]  # (the text of a .config, where it came from)


class Vmlinux(ImageBase):
    """The kernel image proper; `dotconfig`'s options override the ones inferred from the image.
    Its symbols come from its .symtab, or from `symbol_map` (a System.map or kallsyms dump) when
    it has none (the vmlinux inside a bzImage)."""

    is_module = False
    name = "vmlinux"
    _INDEXED = ("_raw_symbols", "symbols", *ImageBase._INDEXED, "inferred_config")

    def __init__(self, elf: ElfFile, profile: CpuProfile, cache: IndexCache | None = None,
                 dotconfig: DotConfig | None = None, symbol_map: SymbolMap | None = None) -> None:
        super().__init__(elf, profile)
        self._dotconfig = dotconfig
        self.symbol_map = symbol_map
        if cache is not None:
            build_id = self.elf.build_id()
            if build_id is not None and self.symbol_map is not None:
                build_id += self.symbol_map.digest  # the symbols are the map's: its own index
            self._use_index(cache, build_id)

    def _to_index(self) -> dict[str, Any]:
        """The whole-file facts the rules consult, in the index's plain types (image/cache_format.py)."""
        config = self.inferred_config
        version = config.version
        return {
            **super()._to_index(),
            "raw_symbols": self._raw_symbols.to_index(),
            "symbols": self.symbols.to_index(),
            "config": {"version": None if version is None else [version.major, version.minor, version.patch,
                                                                 version.debian_version, version.release, version.raw],
                       "options": [list(inf) for inf in config.options.values()], "embedded": config.embedded},
        }

    @classmethod
    def _from_index(cls, tree: Any) -> IndexedParts:
        indexed, sites, tables = super()._from_index(tree)
        indexed["_raw_symbols"] = NameMap.from_index(field(tree, "raw_symbols", dict))
        indexed["symbols"] = Kallsyms.from_index(field(tree, "symbols", dict))
        indexed["inferred_config"] = _config_from_index(field(tree, "config", dict))
        return indexed, sites, tables

    def _run_time_address(self, sec: ElfSection) -> int | None:
        # per-CPU data is linked at 0: it is not kernel text or data at run time
        return sec.address or None

    def section_address(self, sec: ElfSection) -> int:
        return sec.address

    @property
    def vmlinux(self) -> Vmlinux:
        return self

    @cached_property
    def _nm_entries(self) -> list[tuple[int, str, str]]:
        """(address, name, nm type) of the symbols: the .symtab's, or the map's (checked to be
        this image's: its linux_banner, where it has one, must point at the banner)."""
        if self.symbol_map is None:
            return nm_entries(self.elf)
        text = self.elf.section(".text")
        entries = self.symbol_map.entries(text.address if text is not None else 0)
        banner = next((a for a, n, _ in entries if n == "linux_banner"), None)
        if banner is not None and not self.read(banner, 14).startswith(b"Linux version "):
            raise InputError(self.symbol_map.path, f"not the symbols of {self.path} (its linux_banner does not "
                                                   "point at the image's banner): another kernel's?")
        return entries

    def symbol_names(self) -> list[tuple[str, bool]]:
        if self.symbol_map is None:
            return super().symbol_names()
        return [(name, True) for _, name, _ in self._nm_entries]  # a map lists defined symbols only

    @cached_property
    def symbols(self) -> Kallsyms:
        return kallsyms_from_nm(self._nm_entries)

    @cached_property
    def _raw_symbols(self) -> NameMap:
        """First defined .symtab value of each name whose value kallsyms does not give: linker-script
        markers and table bounds, which the kernel uses directly whether or not kallsyms keeps them.
        (Kept apart from kallsyms to keep the index small.)"""
        out: dict[str, int] = {}
        if self.symbol_map is not None:
            for address, name, _ in self._nm_entries:
                out.setdefault(name, address)
        for s in self.elf.symbols() if self.symbol_map is None else ():
            if s.shndx != 0 and s.name:
                out.setdefault(s.name, s.value)
        symbols = self.symbols
        # kallsyms_lookup_name() of every name at once (the first of equal names wins)
        kallsyms = dict(zip(reversed(symbols.names), reversed(symbols.addresses), strict=True))
        return NameMap({name: value for name, value in out.items() if kallsyms.get(name) != value})

    def raw_symbol(self, name: str) -> int | None:
        memo = self.__dict__.setdefault("_raw_memo", {})
        if name not in memo:
            value = self._raw_symbols.get(name)
            memo[name] = value if value is not None else self.symbols.address_of(name)
        return memo[name]

    def table_source(self, start: str, stop: str, section: str) -> TableSource | None:
        # bounds symbols, not section headers: __mcount_loc and _kprobe_blacklist are merged into .init.data
        lo, hi = self.raw_symbol(start), self.raw_symbol(stop)
        if lo is None or hi is None or hi <= lo:
            return None
        return lo, self.read(lo, hi - lo), None

    @property
    def dotconfig(self) -> DotConfig | None:
        """The .config given with the vmlinux, whose options override those inferred."""
        return self._dotconfig

    @cached_property
    def config(self) -> KernelConfig:
        if self._dotconfig is None:
            return self.inferred_config
        return with_config_file(self.inferred_config, *self._dotconfig)

    @cached_property
    def thunk_range(self) -> tuple[int, int] | None:
        """[__indirect_thunk_start, __indirect_thunk_end] (6.1 + RETPOLINE)."""
        lo, hi = self.raw_symbol("__indirect_thunk_start"), self.raw_symbol("__indirect_thunk_end")
        return (lo, hi) if lo is not None and hi is not None else None

    @cached_property
    def blacklist(self) -> Blacklist:
        return Blacklist(self, vmlinux_areas(self))

    @cached_property
    def version(self) -> str | None:
        banner = self.raw_symbol("linux_banner")
        if banner is None:
            return None
        text = self.read(banner, 512).split(b"\0", 1)[0]
        return text.decode(errors="replace").strip() or None

    def has_init_symbol(self, name: str) -> bool:
        """Init symbols of the vmlinux stay in kallsyms (KALLSYMS_ALL): none is dropped."""
        return False

    def is_ksym_addr(self, address: int) -> bool:
        """kernel/kallsyms.c is_ksym_addr() with KALLSYMS_ALL."""
        (lo, hi), (init_lo, init_hi) = self._ksym_ranges
        return lo <= address < hi or init_lo <= address < init_hi

    @cached_property
    def _ksym_ranges(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """[_stext, _end) and [__init_begin, __init_end); an unknown bound makes its range empty."""
        def bounds(lo: int | None, hi: int | None) -> tuple[int, int]:
            return (lo, hi) if lo is not None and hi is not None else (0, 0)

        return (bounds(self.marker("_stext"), self.marker("_end")),
                bounds(self.marker("__init_begin"), self.marker("__init_end")))

    def is_core_text(self, address: int) -> bool:
        """core_kernel_text() after boot."""
        stext, etext = self.marker("_stext"), self.marker("_etext")
        return stext is not None and etext is not None and stext <= address < etext

    def is_init_text(self, address: int) -> bool:
        lo, hi = self.marker("_sinittext"), self.marker("_einittext")
        return lo is not None and hi is not None and lo <= address < hi


def _config_from_index(data: dict[str, Any]) -> KernelConfig:
    version = data.get("version")
    if version is not None:
        if not (isinstance(version, list) and len(version) == 6 and all(type(v) is int for v in version[:3])
                and all(v is None or isinstance(v, str) for v in version[3:4]) and all(isinstance(v, str)
                                                                                     for v in version[4:])):
            raise IndexFormatError("config: version")
        version = KernelVersion(*version[:3], debian_version=version[3], release=version[4], raw=version[5])
    options = {}
    for item in field(data, "options", list):
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and item[1] in (True, False, None) and isinstance(item[2], str)):
            raise IndexFormatError("config: an option")
        options[item[0]] = ConfigInference(*item)
    embedded = data.get("embedded")
    if embedded is not None and not (isinstance(embedded, dict) and all(isinstance(v, str) for v in embedded.values())):
        raise IndexFormatError("config: embedded")
    return KernelConfig(version, options, embedded)
