"""What a vmlinux (image/vmlinux.py) and a module (image/module.py) share: placed sections and
the bytes in them, the kernel's special tables, and functions decoded from the live text of one
CPU profile, fixed when the image is opened."""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from probelint.arch.x86 import decode as x86
from probelint.arch.x86.cpu import CpuProfile
from probelint.arch.x86.patching import patch_live_text
from probelint.image.blacklist import Blacklist
from probelint.image.cache_format import IndexFormatError, field, joined_names, name_list, typed_array
from probelint.image.changes import DETECTED, Evidence, detected
from probelint.image.elf import ElfFile, ElfSection
from probelint.image.facts import FactStore, FunctionFacts
from probelint.image.function import Function
from probelint.image.kallsyms import KSym, SymbolTable
from probelint.image.kversion import KernelConfig
from probelint.image.tables import NEWER_LAYOUTS, TABLES, read_table
from probelint.image.version import infer_config
from probelint.image.view import KernelImage, TableSource
from probelint.progress import progress

if TYPE_CHECKING:
    from probelint.image.cache import IndexCache

__all__ = ["ImageBase"]

_ADDRESS_LISTS = ("ftrace_sites", "return_sites", "extable", "sealed_endbrs")
_SITES = ("jump_table", "static_call_sites")
_TABLES = ("parainstructions", "alt_instructions", "jump_table")
# what `_from_index` gives back: cached properties, site columns (starts, ends), special tables
IndexedParts = tuple[dict[str, Any], dict[str, tuple[Sequence[int], Sequence[int]]], dict[str, Any]]


class Traceable(NamedTuple):
    """What available_filter_functions lists of an image (`ImageBase.traceable`)."""

    names: list[str]  # functions with an ftrace site, in address order (a name twice: two functions)
    refused: frozenset[str]  # those names of which a symbol is on the kprobe blacklist or in init text


class ImageBase(ABC):
    """One ELF as the kernel holds it at run time, under `profile`."""

    is_module: bool
    name: str
    # a module at MODULE_STATE_COMING (image/module.py `Module.coming`); a vmlinux never is
    coming = False
    # the cached properties a cold run computes for the build-id index (image/cache.py)
    _INDEXED: tuple[str, ...] = (*_ADDRESS_LISTS, "bug_sites", "blacklist", "traceable")

    def __init__(self, elf: ElfFile, profile: CpuProfile) -> None:
        self.elf = elf
        self.path = elf.path
        self._profile = profile
        self._fact_key = profile.cache_key  # read for every function built: an Enum's value is a Python property
        # (start, end, section) of every allocated section, by address
        placed = []
        for sec in elf.sections:
            if not sec.is_alloc or sec.size == 0:
                continue
            start = self._run_time_address(sec)
            if start is not None:
                placed.append((start, start + sec.size, sec))
        placed.sort(key=lambda p: (p[0], p[1]))
        self._placed = placed
        self._starts = [p[0] for p in placed]
        self._functions: dict[int, Function] = {}
        self._facts: FactStore | None = None
        # what the build-id index knows this image by (None: not indexed); also keys the probes'
        # stored results (probelint/result_cache.py)
        self.index_key: str | None = None
        self._tables: dict[str, list[dict[str, int]]] = {}
        self._indexed_tables: dict[str, tuple[list[str], list[Sequence[int]]]] = {}  # (fields, columns)
        self._sites: dict[str, tuple[Sequence[int], Sequence[int]]] = {}
        self.detections: dict[str, Evidence | None] = {}  # image/changes.py `detected`, kept in the index
        # the running kernel's text (live.py, --live): (address, size) -> its bytes, None where
        # it has none; they replace the CPU profile's model of the boot-time patching
        self.live_text: Callable[[int, int], bytes | None] | None = None

    @property
    def profile(self) -> CpuProfile:
        """The CPU whose boot-time patching the live text has (given when the kernel is loaded)."""
        return self._profile

    # ------------------------------------------------------------------ what each kind defines

    @abstractmethod
    def _run_time_address(self, sec: ElfSection) -> int | None:
        """Where an allocated section lives at run time; None if it is not kernel text or data."""

    @abstractmethod
    def section_address(self, sec: ElfSection) -> int: ...

    @abstractmethod
    def table_source(self, start: str, stop: str, section: str) -> TableSource | None:
        """Where a special table lies: between the vmlinux's `start`/`stop` symbols, or a
        module's `section`; None if the image has none."""

    @property
    @abstractmethod
    def vmlinux(self) -> KernelImage | None:
        """The vmlinux this image's code runs against: itself, or the one a module is loaded into."""

    @property
    @abstractmethod
    def symbols(self) -> SymbolTable: ...

    @property
    @abstractmethod
    def version(self) -> str | None:
        """The kernel's banner (``Linux version 6.1.0-56-cloud-amd64 ...``), or a module's vermagic."""

    @abstractmethod
    def raw_symbol(self, name: str) -> int | None: ...

    @abstractmethod
    def is_ksym_addr(self, address: int) -> bool: ...

    @abstractmethod
    def is_core_text(self, address: int) -> bool:
        """core_kernel_text() after boot / a module's core text (check_kprobe_address_safe)."""

    @abstractmethod
    def is_init_text(self, address: int) -> bool: ...

    def is_text(self, address: int) -> bool:
        """check_kprobe_address_safe's text test: core text, or init text while a module is COMING
        (`within_module_init` is text until the module's init memory is freed)."""
        return self.is_core_text(address) or (self.coming and self.is_init_text(address))

    @abstractmethod
    def has_init_symbol(self, name: str) -> bool:
        """A symbol defined in init text, dropped from kallsyms after load."""

    def symbol_names(self) -> list[tuple[str, bool]]:
        """(name, defined) of every named symbol of the image, for what its symbols show of its build."""
        return [(s.name, s.shndx != 0) for s in self.elf.symbols() if s.name]

    def _relocated(self, data: bytes, start: int, sec: ElfSection) -> bytes:
        """`data` (from offset `start` of `sec`) with the relocations the loader applies."""
        return data

    @property
    @abstractmethod
    def blacklist(self) -> Blacklist: ...

    # ------------------------------------------------------------------ the build-id index

    def _use_index(self, cache: IndexCache, key: str | None) -> None:
        """Take the whole-file facts from the index under `key`, or compute and store them."""
        self.index_key = key
        self._facts = cache.fact_store(key)
        tree = cache.load(key)
        if tree is not None:
            try:
                indexed, sites, tables = self._from_index(tree)
            except IndexFormatError as exc:
                cache.discard(key, str(exc))
            else:
                self.__dict__.update(indexed)
                self._sites.update(sites)
                self._indexed_tables = tables
                return
        for name in progress(self._INDEXED, len(self._INDEXED), f"indexing {self.path} (first run)", minimum=1):
            getattr(self, name)
        cache.store(key, self._to_index())

    def _to_index(self) -> dict[str, Any]:
        """What every image keeps, in the index's plain types (image/cache_format.py)."""
        blacklist = self.blacklist.ranges
        reasons = sorted({why for _, _, why in blacklist})
        at = {why: k for k, why in enumerate(reasons)}
        return {
            # sorted address lists stay arrays when loaded: bisected in place, never rebuilt int by int
            **{name: array("Q", getattr(self, name)) for name in _ADDRESS_LISTS},
            "bug_sites": array("Q", sorted(self.bug_sites)),
            "blacklist": {"starts": array("Q", (r[0] for r in blacklist)),
                          "ends": array("Q", (r[1] for r in blacklist)),
                          "reasons": reasons, "reason_of": array("I", (at[r[2]] for r in blacklist))},
            "sites": {name: {"starts": array("Q", starts), "ends": array("Q", ends)}
                      for name in _SITES for starts, ends in [self.site_ranges(name)]},
            "traceable": {"names": joined_names(self.traceable.names),
                          "refused": joined_names(sorted(self.traceable.refused))},
            "detections": {change: None if found is None else [found.value, found.reason]
                           for change in DETECTED for found in [detected(change, self)]},
            # the tables live-text patching and jump-label targets read, rebuilt when first read
            # (a warm run whose functions' live text is in the fact store reads none of the first two)
            "tables": {name: _table_to_index(self.table(name)) for name in _TABLES},
        }

    @classmethod
    def _from_index(cls, tree: Any) -> IndexedParts:
        """The cached properties, reserved sites and special tables kept by `_to_index`, each
        checked for its type and bounds; IndexFormatError otherwise (the index is then rebuilt)."""
        if not isinstance(tree, dict):
            raise IndexFormatError("not a tree")
        indexed: dict[str, Any] = {name: typed_array(tree, name, "Q") for name in _ADDRESS_LISTS}
        indexed["bug_sites"] = frozenset(typed_array(tree, "bug_sites", "Q"))
        black = field(tree, "blacklist", dict)
        starts = typed_array(black, "starts", "Q")
        ends = typed_array(black, "ends", "Q", len(starts))
        reason_of = typed_array(black, "reason_of", "I", len(starts))
        reasons = field(black, "reasons", list)
        if not all(isinstance(r, str) for r in reasons) or (reason_of and max(reason_of) >= len(reasons)):
            raise IndexFormatError("blacklist: reasons")
        indexed["blacklist"] = Blacklist.of_ranges([(s, e, reasons[k]) for s, e, k in zip(starts, ends, reason_of,
                                                                                          strict=True)])
        sites = {}
        for name, data in field(tree, "sites", dict).items():
            if name not in _SITES:
                raise IndexFormatError(f"sites: {name}")
            lo = typed_array(data, "starts", "Q")
            sites[name] = (lo, typed_array(data, "ends", "Q", len(lo)))
        tables = {}
        for name, data in field(tree, "tables", dict).items():
            if name not in _TABLES:
                raise IndexFormatError(f"tables: {name}")
            tables[name] = _table_from_index(name, data)
        indexed["detections"] = _detections_from_index(field(tree, "detections", dict))
        traceable = field(tree, "traceable", dict)
        indexed["traceable"] = Traceable(name_list(traceable, "names"), frozenset(name_list(traceable, "refused")))
        return indexed, sites, tables

    # ------------------------------------------------------------------ shared

    def marker(self, name: str) -> int | None:
        return self.raw_symbol(name)

    def table_columns(self, name: str, *fields: str) -> list[Sequence[int]]:
        """The `fields` of a special section's entries, a sequence each: read straight from the
        index's columns when the table has not been materialized (a warm run wants one or two
        fields of a table, not a dict per entry)."""
        packed = self._indexed_tables.get(name) if name not in self._tables else None
        if packed is not None:
            names, columns = packed
            if all(f in names for f in fields):
                return [columns[names.index(f)] for f in fields]
        entries = self.table(name)
        return [[e[f] for e in entries] for f in fields]

    def table(self, name: str) -> list[dict[str, int]]:
        """A kernel special section's entries (image/tables.py), read once."""
        cached = self._tables.get(name)
        if cached is None:
            packed = self._indexed_tables.pop(name, None)
            if packed is not None:
                fields, columns = packed
                cached = [dict(zip(fields, row, strict=True)) for row in zip(*columns, strict=True)]
            else:
                cached = read_table(self, TABLES[name])
            self._tables[name] = cached
        return cached

    @cached_property
    def traceable(self) -> Traceable:
        """The functions (the first alias at each address, types tTwW) with an ftrace site, and
        which of their names bcc's get_kprobe_functions drops (a symbol of the name on the kprobe
        blacklist or in init text). Indexed: a wildcard on a warm run walks no symbol table."""
        symbols = self.symbols.symbols_in(0, 1 << 64)
        names = [s.name for s in symbols if s.type in "tTwW" and self.ftrace_site_in(s.address, s.end) is not None]
        listed = set(names)
        refused = frozenset(s.name for s in symbols if s.name in listed and (
            self.blacklist.reason(s.address) is not None or self.is_init_text(s.address)))
        return Traceable(names, refused)

    @cached_property
    def return_sites(self) -> list[int]:
        return sorted(self.table_columns("return_sites", "addr")[0])

    @cached_property
    def retpoline_sites(self) -> list[int]:
        return sorted(self.table_columns("retpoline_sites", "addr")[0])

    @cached_property
    def sealed_endbrs(self) -> list[int]:
        return sorted(self.table_columns("ibt_endbr_seal", "addr")[0])

    @cached_property
    def paravirt_sites(self) -> list[tuple[int, int]]:
        """(address, table index) of every paravirt patch site, by address."""
        return sorted((e["instr"], i) for i, e in enumerate(self.table("parainstructions")))

    @cached_property
    def alternative_sites(self) -> list[tuple[int, int]]:
        return sorted((e["instr"], i) for i, e in enumerate(self.table("alt_instructions")))

    def pv_op(self, op_type: int) -> int | None:
        """Target of pv_ops slot `op_type` as initialised in the vmlinux: 0 for _paravirt_nop,
        None if unknown (no vmlinux, no pv_ops)."""
        vmlinux = self.vmlinux
        if vmlinux is None:
            return None
        base, nop = vmlinux.raw_symbol("pv_ops"), vmlinux.raw_symbol("_paravirt_nop")
        if base is None:
            return None
        raw = vmlinux.read(base + 8 * op_type, 8)
        if len(raw) != 8:
            return None
        target = int.from_bytes(raw, "little")
        return 0 if target == nop else target

    @cached_property
    def extable(self) -> list[int]:
        """Sorted faulting-instruction addresses of __ex_table (search_exception_tables)."""
        return sorted(set(self.table_columns("ex_table", "insn")[0]))

    def in_extable(self, address: int) -> bool:
        pos = bisect.bisect_left(self.extable, address)
        return pos < len(self.extable) and self.extable[pos] == address

    def site_ranges(self, name: str) -> tuple[Sequence[int], Sequence[int]]:
        """(starts, ends) of the patched sites of `name`, sorted: jump labels (2 or 5 bytes),
        static calls (5). Two integer columns, bisected as they are (the index's arrays)."""
        cached = self._sites.get(name)
        if cached is None:
            if name == "jump_table":
                sites = []
                for e in self.table("jump_table"):
                    code = e["code"]
                    first = self.read(code, 1)
                    sites.append((code, code + (2 if first in (b"\xeb", b"\x66") else 5)))
            else:
                sites = [(e["addr"], e["addr"] + 5) for e in self.table("static_call_sites")]
            sites.sort()
            cached = self._sites[name] = ([start for start, _ in sites], [end for _, end in sites])
        return cached

    def jump_label_target(self, code: int) -> int | None:
        """The branch target of the jump-label site at `code` (`__jump_table` target field)."""
        targets = self.__dict__.get("_jump_targets")
        if targets is None:
            targets = self.__dict__["_jump_targets"] = dict(zip(*self.table_columns("jump_table", "code", "target"),
                                                                strict=True))
        return targets.get(code)

    def site_overlapping(self, name: str, start: int, end: int) -> int | None:
        """First site of `name` overlapping [start, end), or None."""
        starts, ends = self.site_ranges(name)
        pos = bisect.bisect_left(starts, start - 5)
        while pos < len(starts) and starts[pos] < end:
            if ends[pos] > start:
                return starts[pos]
            pos += 1
        return None

    @cached_property
    def bug_sites(self) -> frozenset[int]:
        return frozenset(self.table_columns("bug_table", "addr")[0])

    @cached_property
    def ftrace_sites(self) -> list[int]:
        """Sorted fentry call sites of a running kernel: __mcount_loc minus zero entries (skipped by
        ftrace_process_locs) and init-text sites (freed by ftrace_free_init_mem after boot)."""
        return sorted({a for a in self.table_columns("mcount_loc", "addr")[0] if a and not self.is_init_text(a)})

    def ftrace_site_in(self, start: int, end: int) -> int | None:
        """ftrace_location_range(start, end - 1): the first site whose 5 bytes overlap."""
        return site_in(self.ftrace_sites, start, end)

    def section_at(self, address: int) -> ElfSection | None:
        pos = bisect.bisect_right(self._starts, address) - 1
        while pos >= 0:
            start, end, sec = self._placed[pos]
            if start <= address < end:
                return sec
            if end <= address and pos > 0 and self._placed[pos - 1][1] <= address:
                return None
            pos -= 1
        return None

    def read(self, address: int, size: int) -> bytes:
        """Bytes at `address`, as far as one section holds them (shorter at a section end), with
        the loader's relocations applied."""
        sec = self.section_at(address)
        if sec is None:
            return b""
        start = address - self.section_address(sec)
        return self._relocated(self.read_unrelocated(address, size), start, sec)

    def read_unrelocated(self, address: int, size: int) -> bytes:
        """`read` before relocation: the file's own bytes (the same for a vmlinux)."""
        sec = self.section_at(address)
        if sec is None:
            return b""
        start = address - self.section_address(sec)
        return self.elf.section_bytes(sec, start, min(size, sec.size - start))

    @cached_property
    def inferred_config(self) -> KernelConfig:
        """Build options inferred from this image's symbols and sections (image/version.py)."""
        return infer_config(self)

    @property
    def config(self) -> KernelConfig:
        return self.inferred_config

    def lookup(self, address: int) -> KSym | None:
        if not self.is_ksym_addr(address):
            return None
        return self.symbols.lookup(address)

    def function(self, sym: KSym, *, every_insn: bool = False) -> Function:
        """The containing symbol decoded from its start (cached per image). Instructions are
        decoded when read unless `every_insn` (a caller that reads them all keeps the walk's)."""
        fn = self._functions.get(sym.address)
        if fn is None:
            # The last instruction may run past the symbol end: the kernel reads on. The facts are
            # tied to the file's bytes before relocation and keep the relocated, patched text as
            # differences from them: a warm module run applies no relocation (the index is keyed
            # by the module's build-id and its vmlinux's, which fix every relocation's value).
            file_code = self.read_unrelocated(sym.address, sym.size + x86.MAX_INSN_SIZE)
            live = self.live_text(sym.address, len(file_code)) if self.live_text is not None else None
            # the fact store holds the model's text: a running kernel's is its own, never stored
            store = self._facts if live is None else None
            facts = store.get(self._fact_key, sym.address, file_code) if store is not None else None
            code = live if live is not None else facts.live(file_code) if facts is not None else \
                patch_live_text(self, sym.address, self.read(sym.address, len(file_code)), self.profile)
            if facts is not None and not every_insn:
                fn = Function(sym, facts, code)
            else:
                insns = []
                for insn in x86.decode(code, sym.address):
                    if insn.address >= sym.end:
                        break
                    insns.append(insn)
                if facts is None:
                    facts = FunctionFacts.of(insns, file_code, code)
                    if store is not None:
                        store.put(self._fact_key, sym.address, facts, file_code)
                # Otherwise the walk is dropped: rules read a few instructions, and memory stays flat.
                fn = Function(sym, facts, code, tuple(insns) if every_insn else None)
            self._functions[sym.address] = fn
        return fn

    def prefetch_functions(self, symbols: list[KSym]) -> None:
        """Fetch the stored facts of the functions about to be read, in a few queries."""
        if self._facts is not None:
            self._facts.prefetch(self._fact_key,
                                 [s.address for s in symbols if s.address not in self._functions])

    def forget_functions(self) -> None:
        """Drop the decoded functions (a caller that visits each function once)."""
        self._functions.clear()

    def save_facts(self) -> None:
        """Write the decode facts of the functions this process decoded (image/facts.py); also
        done at exit, but forked workers leave without running exit handlers."""
        if self._facts is not None:
            self._facts.flush()

    def describe(self, address: int) -> str:
        """``SYM+0xOFF`` (``MOD:SYM+0xOFF`` in a module), or the bare address."""
        sym = self.lookup(address)
        if sym is None:
            return f"{address:#x}"
        prefix = f"{self.name}:" if self.is_module else ""
        return f"{prefix}{sym.name}+{address - sym.address:#x}"


def site_in(sites: Sequence[int], start: int, end: int) -> int | None:
    """The first of the sorted fentry `sites` whose 5 bytes overlap [start, end)."""
    pos = bisect.bisect_left(sites, start - x86.MCOUNT_INSN_SIZE + 1)
    return sites[pos] if pos < len(sites) and sites[pos] < end else None


def _detections_from_index(data: dict[str, Any]) -> dict[str, Evidence | None]:
    if data.keys() != set(DETECTED):
        raise IndexFormatError("detections: not the detected changes")
    out: dict[str, Evidence | None] = {}
    for change, found in data.items():
        if found is not None and not (isinstance(found, list) and len(found) == 2 and isinstance(found[0], bool)
                                      and isinstance(found[1], str)):
            raise IndexFormatError(f"detections: {change}")
        out[change] = None if found is None else Evidence(*found)
    return out


def _table_to_index(entries: list[dict[str, int]]) -> dict[str, Any]:
    fields = list(entries[0]) if entries else []
    columns = [[e[f] for e in entries] for f in fields]
    # pointers need all 64 bits unsigned; only s32 fields go below zero
    return {"fields": fields, "columns": [array("q" if min(c) < 0 else "Q", c) for c in columns]}


def _table_from_index(name: str, data: dict[str, Any]) -> tuple[list[str], list[memoryview]]:
    fields, columns = field(data, "fields", list), field(data, "columns", list)
    layouts = {tuple(f.name for f in t.fields) for t in (TABLES[name], *(t for _, t in NEWER_LAYOUTS.get(name, ())))}
    if fields and tuple(fields) not in layouts:
        raise IndexFormatError(f"{name}: not a layout of the table")
    if len(columns) != len(fields) or not all(isinstance(c, memoryview) and c.format in "qQ" for c in columns) \
            or len({len(c) for c in columns}) > 1:
        raise IndexFormatError(f"{name}: columns of the wrong type or length")
    return fields, columns
