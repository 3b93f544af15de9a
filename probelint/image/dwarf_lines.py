"""perf's source-line probe points resolved through DWARF, as `perf probe` resolves them.

Model of tools/perf/util/probe-finder.c (Linux 6.1, the perf Debian ships) and its helpers in
dwarf-aux.c, on the DWARF of one vmlinux:

* ``FILE:LINE`` -- `debuginfo__find_probe_location`: every compilation unit whose file table has a
  file whose tail matches FILE (`cu_find_realpath`, `strtailcmp`) is walked by
  `find_probe_point_by_line` = `die_walk_lines` over the CU: the ``is_stmt`` rows of .debug_line
  (libdw order: by address, end-of-sequence first), then each function's declaration line at its
  entry and each inline call site (`__die_walk_funclines`); `probe_point_line_walker` keeps the
  rows of that line, `verify_representive_line` refuses a line whose address another line of the
  same file owns, `find_best_scope` + `call_probe_finder` find the real function around it, and
  `add_probe_trace_event` drops repeated addresses;
* ``FUNC:RLN``, ``FUNC@FILE:RLN`` -- `probe_point_search_cb`: the first defining subprogram DIE
  named FUNC (declared in FILE) in each unit; line = its DW_AT_decl_line + RLN, then the same line
  walk over that unit, so lines of an inlined function are found at each inline site;
* ``FUNC@FILE``, ``FUNC@FILE+OFF`` -- the function's entry (+OFF), or for an inline function each
  instance's entry (`die_walk_instances`, `probe_point_inline_cb`); perf skips the prologue only
  for uprobes (`skip_prologue`), never for the kernel.

perf then names each address by the ELF symbol that contains it (offline: the symbol table of the
vmlinux, `post_process_offline_probe_trace_events`); the caller does that with the kallsyms view.

Only the units involved are parsed: a unit index (offset, name and file table of every unit: the
unit headers and line-program headers only) is built once and kept by build-id, functions are
found through the symbol table and .debug_aranges, and results are kept by build-id too.

Not modelled: lazy patterns (``FUNC;PTN``), perf's retry through `get_alternative_probe_event`,
units reached only through an inline copy of FUNC in another unit (FUNC:RLN of a header inline
function, found by perf in every unit that inlines it; here only in units holding a symbol of
FUNC), and FILE:LINE of a file included by more than `MAX_UNITS` units.
"""

from __future__ import annotations

import bisect
import fnmatch
import mmap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from elftools.common.exceptions import DWARFError, ELFParseError
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo

from probelint.readers.spec import PerfPoint

if TYPE_CHECKING:
    from probelint.image.cache import IndexCache
    from probelint.image.kernel import Image

__all__ = ["MAX_UNITS", "DwarfLines", "PerfPoint", "Resolution"]

MAX_UNITS = 32  # units walked for one FILE:LINE: a header included everywhere is not resolved
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Resolution:
    """Addresses perf would probe, in perf's order, or why perf finds none."""

    addresses: tuple[int, ...] = ()
    error: str | None = None
    unsupported: bool = False  # a form or case probelint does not resolve (not perf's failure)


class ResolveError(Exception):
    def __init__(self, message: str, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def strtailcmp(a: str, b: str) -> bool:
    """perf's `strtailcmp(a, b) == 0`: one string is a tail of the other."""
    n = min(len(a), len(b))
    return n == 0 or a[-n:] == b[-n:]


class _Window:
    """A read-only file-like view of one section of the mapped image (pyelftools seeks and reads)."""

    def __init__(self, data: mmap.mmap | bytes, offset: int, size: int) -> None:
        self._data, self._offset, self._size, self._pos = data, offset, size, 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else self._pos + pos if whence == 1 else self._size + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        n = self._size - self._pos if n is None or n < 0 else min(n, self._size - self._pos)
        start = self._offset + self._pos
        self._pos += max(n, 0)
        return self._data[start : start + max(n, 0)]


@dataclass(eq=False, slots=True)
class _Die:
    """A subprogram, inlined subroutine or lexical block: what perf's walks look at."""

    tag: str  # "S" subprogram, "I" inlined subroutine, "B" lexical block
    offset: int
    attrs: dict[str, Any]
    ranges: list[tuple[int, int]]
    entry: int | None  # dwarf_entrypc: DW_AT_entry_pc, else DW_AT_low_pc
    children: list[_Die] = field(default_factory=list)

    def haspc(self, addr: int) -> bool:
        return any(lo <= addr < hi for lo, hi in self.ranges)

    def die_entrypc(self) -> int | None:
        """perf's `die_entrypc`: dwarf_entrypc, else the first range's start."""
        if self.entry is not None:
            return self.entry
        return self.ranges[0][0] if "DW_AT_ranges" in self.attrs and self.ranges else None

    @property
    def is_instance(self) -> bool:  # die_is_func_instance
        return self.tag in "SI" and (self.entry is not None or "DW_AT_ranges" in self.attrs)

    @property
    def is_func_def(self) -> bool:  # die_is_func_def
        return (self.tag == "S" and "DW_AT_declaration" not in self.attrs
                and ("DW_AT_inline" in self.attrs or self.die_entrypc() is not None))

    def walk(self) -> Any:
        """Pre-order over the descendants (die_find_child with CONTINUE)."""
        for child in self.children:
            yield child
            yield from child.walk()


class _Unit:
    """One compilation unit: its line table (libdw's order) and function tree."""

    def __init__(self, owner: DwarfLines, cu: Any) -> None:
        dwarf = owner.dwarf
        top = cu.get_top_DIE()
        self.files = owner.unit_files(cu.cu_offset)
        program = dwarf.line_program_for_CU(cu)
        version = program.header.version if program is not None else 5
        base = 0 if version >= 5 else 1
        sequences: list[list[tuple[int, bool, int, str | None, bool]]] = [[]]
        for entry in program.get_entries() if program is not None else []:
            s = entry.state
            if s is None:
                continue
            fname = self.file(s.file - base)
            sequences[-1].append((s.address, bool(s.end_sequence), s.line, fname, bool(s.is_stmt)))
            if s.end_sequence:
                sequences.append([])
        rows = [r for seq in sequences for r in seq]
        rows.sort(key=lambda r: (r[0], not r[1]))  # stable: an end of sequence first at one address
        self.rows = rows
        self.row_addrs = [r[0] for r in rows]
        self.by_offset: dict[int, _Die] = {}
        self.root = _Die("U", top.offset, {}, [], None)
        self._file_base = base
        cu_low = top.attributes["DW_AT_low_pc"].value if "DW_AT_low_pc" in top.attributes else 0
        ranges = dwarf.range_lists()
        pending = [(top, self.root)]
        while pending:  # children through DW_AT_sibling: the subtrees of types and variables are skipped
            die, node = pending.pop()
            kids = []
            for child in die.iter_children():
                tag = _TAGS.get(child.tag)
                if tag is None:
                    continue  # not a scope perf's walks look into
                # references are unit-relative in pyelftools: kept absolute, as DIE offsets are
                attrs = {k: v.value + cu.cu_offset if v.form in _CU_REFS else v.value
                         for k, v in child.attributes.items() if k in _KEPT}
                entry = attrs.get("DW_AT_entry_pc", attrs.get("DW_AT_low_pc"))
                sub = _Die(tag, child.offset, attrs, _ranges(child, ranges, cu, cu_low), entry)
                node.children.append(sub)
                self.by_offset[child.offset] = sub
                if child.has_children:
                    kids.append((child, sub))
            pending.extend(reversed(kids))

    def file(self, index: int) -> str | None:
        return self.files[index] if 0 <= index < len(self.files) else None

    def integrate(self, die: _Die, name: str) -> Any:
        """dwarf_attr_integrate: the attribute, else the abstract origin's or specification's."""
        for _ in range(8):
            if name in die.attrs:
                return die.attrs[name]
            ref = die.attrs.get("DW_AT_abstract_origin", die.attrs.get("DW_AT_specification"))
            nxt = self.by_offset.get(ref) if ref is not None else None
            if nxt is None:
                return None
            die = nxt
        return None

    def name(self, die: _Die) -> str | None:
        value = self.integrate(die, "DW_AT_name")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    def match_name(self, die: _Die, glob: str) -> bool:
        """die_match_name: the name, else the linkage name, matches."""
        for attr in ("DW_AT_name", "DW_AT_linkage_name"):
            value = self.integrate(die, attr)
            if isinstance(value, bytes) and fnmatch.fnmatchcase(value.decode("utf-8", "replace"), glob):
                return True
        return False

    def decl_file(self, die: _Die) -> str | None:
        index = self.integrate(die, "DW_AT_decl_file")
        return self.file(index - self._file_base) if isinstance(index, int) else None

    def decl_line(self, die: _Die) -> int | None:
        return self.integrate(die, "DW_AT_decl_line")

    def call_file(self, die: _Die) -> str | None:
        index = self.integrate(die, "DW_AT_call_file")
        return self.file(index - self._file_base) if isinstance(index, int) else None

    def funcs(self) -> list[_Die]:
        """dwarf_getfuncs on a C unit: defining subprograms, pre-order through scopes."""
        return [d for d in self.root.walk() if d.tag == "S" and "DW_AT_declaration" not in d.attrs]

    def realfunc(self, addr: int) -> _Die | None:  # die_find_realfunc
        return next((d for d in self.funcs() if d.haspc(addr)), None)

    def _inline_at(self, scope: _Die, addr: int) -> _Die | None:
        """die_find_child(__die_find_inline_cb): the first inlined subroutine holding addr."""
        return next((d for d in scope.walk() if d.tag == "I" and d.haspc(addr)), None)

    def functions_at(self, addr: int) -> list[_Die]:
        """cu_walk_functions_at: the real function, then each nested inline instance at addr."""
        out = []
        scope = self.realfunc(addr)
        while scope is not None:
            out.append(scope)
            scope = self._inline_at(scope, addr)
        return out

    def statement_row(self, addr: int) -> tuple[int, bool, int, str | None, bool] | None:
        """cu_getsrc_die: the first statement row at addr (binary search as perf does it)."""
        rows = self.rows
        if not rows:
            return None
        lo = bisect.bisect_right(self.row_addrs, addr) - 1
        lo = max(lo, 0)
        while True:
            lo -= 1
            if lo < 0:
                return None
            if rows[lo][0] != addr:
                break
        lo += 1
        while lo < len(rows):
            row = rows[lo]
            lo += 1
            if row[0] > addr:
                return None
            if row[4]:
                return row
        return None

    def lineinfo(self, addr: int) -> tuple[str | None, int]:
        """cu_find_lineinfo: a function's declaration at its entry, else the statement row."""
        func = self.realfunc(addr)
        if func is not None and func.die_entrypc() == addr:
            return self.decl_file(func), self.decl_line(func) or 0
        row = self.statement_row(addr)
        if row is None or row[3] is None:
            return None, 0
        return row[3], row[2]

    def walk_lines(self) -> Any:
        """die_walk_lines on the unit: (file, line, address) of statement rows, then of each
        function's declaration at its entry and each inline call site (and the inlined
        function's declaration line at the inline entry)."""
        for addr, end, line, fname, stmt in self.rows:
            if not end and stmt:
                yield fname, line, addr
        for sp in self.funcs():
            fname, line, entry = self.decl_file(sp), self.decl_line(sp), sp.die_entrypc()
            if fname and line is not None and entry is not None:
                yield fname, line, entry
            for die in sp.walk():
                if die.tag != "I":
                    continue
                cfile, cline = self.call_file(die), die.attrs.get("DW_AT_call_line") or 0
                entry = die.die_entrypc() if cfile and cline > 0 else None
                if entry is None:
                    continue
                yield cfile, cline, entry
                dfile, dline = self.decl_file(die), self.decl_line(die)
                if entry and dfile and dline is not None:
                    yield dfile, dline, entry


_CU_REFS = frozenset({"DW_FORM_ref1", "DW_FORM_ref2", "DW_FORM_ref4", "DW_FORM_ref8", "DW_FORM_ref_udata"})
_TAGS = {"DW_TAG_subprogram": "S", "DW_TAG_inlined_subroutine": "I", "DW_TAG_lexical_block": "B"}
_KEPT = frozenset({"DW_AT_name", "DW_AT_linkage_name", "DW_AT_decl_file", "DW_AT_decl_line", "DW_AT_call_file",
                   "DW_AT_call_line", "DW_AT_abstract_origin", "DW_AT_specification", "DW_AT_declaration",
                   "DW_AT_inline", "DW_AT_low_pc", "DW_AT_entry_pc", "DW_AT_ranges"})


def _ranges(die: Any, ranges: Any, cu: Any, cu_low: int) -> list[tuple[int, int]]:
    attrs = die.attributes
    if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
        low, high = attrs["DW_AT_low_pc"], attrs["DW_AT_high_pc"]
        end = high.value if high.form == "DW_FORM_addr" else low.value + high.value
        return [(low.value, end)]
    if "DW_AT_ranges" in attrs and ranges is not None:
        out, base = [], cu_low
        for entry in ranges.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=cu):
            if hasattr(entry, "base_address"):
                base = entry.base_address
            elif entry.is_absolute:
                out.append((entry.begin_offset, entry.end_offset))
            else:
                out.append((base + entry.begin_offset, base + entry.end_offset))
        return out
    return []


class DwarfLines:
    """Resolution of perf source-line probe points against one vmlinux's DWARF."""

    def __init__(self, image: Image, cache: IndexCache | None = None) -> None:
        self.image = image
        self.cache = cache
        self.build_id = image.elf.build_id()
        elf = image.elf
        info = elf.section(".debug_info")
        self.has_dwarf = info is not None and info.size > 0 and elf.section(".debug_line") is not None
        self._dwarf: DWARFInfo | None = None
        self._units: dict[int, _Unit] = {}
        # a --strip-debug copy shares the -dbg file's build-id: it must neither read nor write its results
        if not self.has_dwarf:
            self.cache = cache = None
        stored = cache.load(self.build_id) if cache is not None and self.build_id else None
        self._index: dict[str, Any] | None = stored.get("units") if stored else None
        self._results: dict[PerfPoint, Resolution] = stored.get("results", {}) if stored else {}
        self._dirty = False

    @property
    def dwarf(self) -> DWARFInfo:
        if self._dwarf is None:
            elf = self.image.elf

            def section(name: str) -> DebugSectionDescriptor | None:
                sec = elf.section(name)
                if sec is None:
                    return None
                return DebugSectionDescriptor(_Window(elf._map, sec.offset, sec.size), name, sec.offset,
                                              sec.size, 0)

            names = (".debug_info", ".debug_aranges", ".debug_abbrev", ".debug_frame", None, ".debug_str",
                     ".debug_loc", ".debug_ranges", ".debug_line", ".debug_pubtypes", ".debug_pubnames",
                     ".debug_addr", ".debug_str_offsets", ".debug_line_str", ".debug_loclists",
                     ".debug_rnglists", None, None, None)
            config = DwarfConfig(little_endian=True, machine_arch="x64", default_address_size=8)
            # relocations are not applied: a vmlinux is linked, its --emit-relocs copies are history
            self._dwarf = DWARFInfo(config, *(section(n) if n else None for n in names))
        return self._dwarf

    # -- the unit index: built from unit and line-program headers only, kept by build-id
    def _unit_index(self) -> dict[str, Any]:
        if self._index is None:
            elf = self.image.elf
            sections = {n: elf.section_bytes(s) for n in (".debug_info", ".debug_abbrev", ".debug_line", ".debug_str",
                                                          ".debug_line_str") if (s := elf.section(n)) is not None}
            paths: dict[str, int] = {}
            units: list[tuple[int, str, list[int]]] = []
            for offset, name, files in _headers(sections):
                units.append((offset, name, [paths.setdefault(f, len(paths)) for f in files]))
            self._index = {"paths": list(paths), "units": units}
            self._dirty = True
        return self._index

    def unit_files(self, cu_offset: int) -> list[str]:
        index = self._unit_index()
        for offset, _, files in index["units"]:
            if offset == cu_offset:
                return [index["paths"][f] for f in files]
        return []

    def _unit(self, cu_offset: int) -> _Unit:
        unit = self._units.get(cu_offset)
        if unit is None:
            unit = self._units[cu_offset] = _Unit(self, self.dwarf.get_CU_at(cu_offset))
        return unit

    def _units_with_file(self, file: str) -> list[tuple[int, str]]:
        """(unit offset, cu_find_realpath) of each unit whose file table has a file ending in `file`."""
        index = self._unit_index()
        paths = index["paths"]
        matching = {i for i, p in enumerate(paths) if strtailcmp(p, file)}
        out = []
        for offset, _, files in index["units"]:
            first = next((f for f in files if f in matching), None)
            if first is not None:
                out.append((offset, paths[first]))
        return out

    def _units_of_function(self, name: str) -> list[int]:
        """Units holding an out-of-line copy of `name` (or of its .constprop/.isra/.part pieces):
        symbol table, then .debug_aranges."""
        symbols = self.image.symbols
        addresses = {symbols.addresses[i] for i, n in enumerate(symbols.names)
                     if n == name or n.startswith(name + ".")}
        aranges = self.dwarf.get_aranges()
        if aranges is None:
            raise ResolveError("the image has no .debug_aranges: probelint finds functions through it",
                               unsupported=True)
        found = set()
        for addr in addresses:
            offset = aranges.cu_offset_at_addr(addr)
            if offset is not None:
                found.add(offset)
        return sorted(found)

    # -- resolution
    def resolve(self, point: PerfPoint) -> Resolution:
        cached = self._results.get(point)
        if cached is not None:
            return cached
        if not self.has_dwarf:
            result = Resolution(error=f"{self.image.path} has no DWARF (.debug_info/.debug_line): perf needs it "
                                      "for source-line probes (use the -dbg vmlinux)", unsupported=True)
        else:
            try:
                result = Resolution(addresses=tuple(self._find(point)))
            except ResolveError as exc:
                result = Resolution(error=str(exc), unsupported=exc.unsupported)
            except (DWARFError, ELFParseError, KeyError, ValueError, IndexError) as exc:
                result = Resolution(error=f"cannot read the DWARF of {self.image.path}: {exc}", unsupported=True)
        self._results[point] = result
        self._dirty = True
        return result

    def save(self) -> None:
        if self.cache is not None and self.build_id and self._dirty and self._index is not None:
            self.cache.store(self.build_id, {"units": self._index, "results": self._results, "format": _FORMAT})
            self._dirty = False

    def _find(self, point: PerfPoint) -> list[int]:
        found: list[int] = []
        if point.function is None:
            file = point.file or ""
            units = self._units_with_file(file)
            if not units:
                raise ResolveError(f"no compilation unit has a source file {file}")
            if len(units) > MAX_UNITS:
                raise ResolveError(f"{file} is in {len(units)} compilation units: perf walks the lines of each, "
                                   f"probelint resolves files of at most {MAX_UNITS} units", unsupported=True)
            for offset, realpath in units:
                self._by_line(self._unit(offset), realpath, point.line, None, found)
        else:
            units_of = self._units_of_function(point.function)
            if not units_of and point.file:
                units_of = [o for o, _ in self._units_with_file(point.file)][: MAX_UNITS + 1]
            if not units_of:
                raise ResolveError(f"{point.function} has no symbol: an inline-only function is found only "
                                   "with FUNC@FILE", unsupported=True)
            for offset in units_of:
                unit = self._unit(offset)
                if point.file and not any(strtailcmp(f, point.file) for f in unit.files):
                    continue
                self._by_function(unit, point, found)
        if not found:
            raise ResolveError(f"perf finds no code for {_spelling(point)} (Probe point not found)")
        return found

    def _by_function(self, unit: _Unit, point: PerfPoint, found: list[int]) -> None:
        """probe_point_search_cb on the first matching defining subprogram of the unit."""
        assert point.function is not None
        for sp in unit.funcs():
            if not unit.match_name(sp, point.function):
                continue
            decl = unit.decl_file(sp)
            if point.file and (decl is None or not strtailcmp(point.file, decl)):
                continue
            if point.line:
                self._by_line(unit, decl, (unit.decl_line(sp) or 0) + point.line, point.function, found)
            elif sp.is_instance:
                entry = sp.die_entrypc()
                if entry:
                    self._add(unit, sp, entry + point.offset, found)
            else:
                for inst in self._instances(unit, sp, every=point.every_instance):
                    entry = inst.die_entrypc()
                    if not entry:
                        break  # perf's walk stops at the first instance without an entry address
                    self._add(unit, inst, entry + point.offset, found)
            return

    def _instances(self, unit: _Unit, origin: _Die, *, every: bool = False) -> list[_Die]:
        """die_walk_instances, less (for perf, unless `every`) the redundant ones (call site on the
        declaration line)."""
        out = []
        for die in unit.root.walk():
            if not die.is_instance or die.attrs.get("DW_AT_abstract_origin") != origin.offset:
                continue
            if (not every and die.tag == "I" and die.attrs.get("DW_AT_call_line") == unit.decl_line(origin)
                    and die.attrs.get("DW_AT_call_file") == unit.integrate(origin, "DW_AT_decl_file")):
                continue
            out.append(die)
        return out

    def _by_line(self, unit: _Unit, fname: str | None, line: int, function: str | None, found: list[int]) -> None:
        """find_probe_point_by_line: probe_point_line_walker over die_walk_lines of the unit."""
        if fname is None:
            return
        for rfile, rline, addr in unit.walk_lines():
            if rline != line or rfile is None or not strtailcmp(rfile, fname):
                continue
            lfile, lline = unit.lineinfo(addr)  # verify_representive_line
            if lfile == rfile and lline != line:
                where = lfile
                scope = self._best_scope(unit, addr, function, fname, line) if function else None
                if scope is not None and unit.match_name(scope, function or "") and unit.decl_line(scope) is not None:
                    where, lline = unit.name(scope), lline - (unit.decl_line(scope) or 0)
                raise ResolveError(f"perf refuses it: this line shares its address with other lines "
                                   f"(perf suggests {where}:{lline})")
            scope = self._best_scope(unit, addr, function, fname, line)
            if scope is None:
                raise ResolveError("perf finds no function around this line (Failed to find scope of probe point)")
            self._add(unit, scope, addr, found)

    def _best_scope(self, unit: _Unit, addr: int, function: str | None, fname: str, line: int) -> _Die | None:
        """find_best_scope: the function named FUNC, else the nearest one declared above the line."""
        chain = unit.functions_at(addr)
        best, diff = None, None
        for die in chain:
            if unit.decl_file(die) != fname:
                continue
            if function:
                if unit.match_name(die, function):
                    return die
            else:
                lno = unit.decl_line(die) or 0
                if lno < line and (diff is None or line - lno < diff):
                    best, diff = die, line - lno
        if best is None and chain:
            return chain[0]
        return best

    def _add(self, unit: _Unit, scope: _Die, addr: int, found: list[int]) -> None:
        """call_probe_finder + add_probe_trace_event: the real function, one probe per address."""
        sp = scope if scope.is_func_def else unit.realfunc(addr)
        if sp is None:
            if any(d.tag == "S" and any(hi == addr for _, hi in d.ranges) for d in unit.funcs()):
                return  # perf: "Ignoring tail call from ..."
            raise ResolveError("perf finds no function at this address (Failed to find probe point in any functions)")
        if addr in found:
            return
        if not sp.haspc(addr):
            raise ResolveError(f"perf refuses it: the offset is out of {unit.name(sp)}")
        found.append(addr)


class _Reader:
    """Just enough DWARF to read unit and line-program headers fast (pyelftools' construct-based
    parser takes ~30 ms a unit, mostly for the abbreviation table; the index needs 2,000 units)."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def u(self, size: int) -> int:
        value = int.from_bytes(self.data[self.pos : self.pos + size], "little")
        self.pos += size
        return value

    def uleb(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def cstr(self) -> bytes:
        end = self.data.index(b"\0", self.pos)
        value = self.data[self.pos : end]
        self.pos = end + 1
        return value


# DW_FORM_*: fixed sizes (offset size 4, address size 8; 64-bit DWARF is refused below)
_FIXED = {0x01: 8, 0x0B: 1, 0x05: 2, 0x06: 4, 0x07: 8, 0x1E: 16, 0x0C: 1, 0x11: 1, 0x12: 2, 0x13: 4, 0x14: 8,
          0x10: 4, 0x17: 4, 0x0E: 4, 0x1F: 4, 0x1D: 4, 0x19: 0, 0x21: 0, 0x25: 1, 0x26: 2, 0x27: 3, 0x28: 4,
          0x29: 1, 0x2A: 2, 0x2B: 3, 0x2C: 4, 0x20: 8, 0x1C: 4}


def _form(r: _Reader, form: int, strings: dict[str, bytes]) -> int | bytes | None:
    """One attribute value: strings resolved, other values as integers (None: skipped)."""
    if form == 0x08:  # DW_FORM_string
        return r.cstr()
    if form in (0x0E, 0x1F):  # strp, line_strp
        table = strings.get(".debug_str" if form == 0x0E else ".debug_line_str", b"")
        offset = r.u(4)
        return table[offset : table.index(b"\0", offset)]
    if form in (0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23):  # udata, ref_udata, strx, addrx, loclistx, rnglistx
        return r.uleb()
    if form == 0x0D:  # sdata
        r.uleb()
        return None
    if form in (0x09, 0x18):  # block, exprloc
        r.pos += r.uleb()
        return None
    if form in (0x0A, 0x03, 0x04):  # block1, block2, block4
        r.pos += r.u({0x0A: 1, 0x03: 2, 0x04: 4}[form])
        return None
    if form in _FIXED:
        return r.u(_FIXED[form])
    raise ValueError(f"DWARF form {form:#x} in a unit header")


def _headers(sections: dict[str, bytes]) -> list[tuple[int, str, list[str]]]:
    """(offset, DW_AT_name, file table) of every unit of .debug_info, from headers only."""
    info, abbrev, line = (sections.get(n, b"") for n in (".debug_info", ".debug_abbrev", ".debug_line"))
    out = []
    pos = 0
    while pos + 11 <= len(info):
        r = _Reader(info, pos)
        length = r.u(4)
        if length >= 0xFFFFFFF0:
            raise ValueError("64-bit DWARF is not supported")
        end = pos + 4 + length
        version = r.u(2)
        if version >= 5:
            r.u(1)  # unit type
            r.u(1)  # address size
            abbrev_offset = r.u(4)
        else:
            abbrev_offset = r.u(4)
            r.u(1)
        code = r.uleb()
        attrs = _top_attributes(abbrev, abbrev_offset, code, r, sections)
        name = attrs.get(0x03)
        stmt = attrs.get(0x10)
        files = _line_files(line, stmt, attrs.get(0x1B), sections) if isinstance(stmt, int) else []
        out.append((pos, name.decode("utf-8", "replace") if isinstance(name, bytes) else "", files))
        pos = end
    return out


def _top_attributes(abbrev: bytes, offset: int, code: int, r: _Reader,
                    sections: dict[str, bytes]) -> dict[int, int | bytes | None]:
    a = _Reader(abbrev, offset)
    while True:
        this = a.uleb()
        if this == 0:
            raise ValueError(f"abbreviation {code} missing")
        a.uleb()  # tag
        a.u(1)  # children
        specs = []
        while True:
            attr, form = a.uleb(), a.uleb()
            if form == 0x21:  # implicit_const
                a.uleb()
            if attr == 0 and form == 0:
                break
            specs.append((attr, form))
        if this == code:
            return {attr: _form(r, form, sections) for attr, form in specs}


def _line_files(line: bytes, offset: int, comp_dir: int | bytes | None, sections: dict[str, bytes]) -> list[str]:
    """The file table of the line program at `offset`, as libdw spells it (dwarf_filesrc:
    DIR/NAME; DWARF 5 indexes files from 0, earlier versions from 1 with directory 0 the
    compilation directory)."""
    r = _Reader(line, offset)
    r.u(4)
    version = r.u(2)
    if version >= 5:
        r.u(2)  # address and segment selector sizes
    r.u(4)  # header length
    r.u(1)  # minimum instruction length
    if version >= 4:
        r.u(1)  # maximum operations per instruction
    r.u(4)  # default_is_stmt, line_base, line_range, opcode_base
    r.pos += line[r.pos - 1] - 1  # standard opcode lengths
    dirs: list[bytes] = []
    files: list[tuple[bytes, int]] = []
    if version >= 5:
        for table in (dirs, files):
            formats = [(r.uleb(), r.uleb()) for _ in range(r.u(1))]
            for _ in range(r.uleb()):
                path, index = b"", 0
                for content, form in formats:
                    value = _form(r, form, sections)
                    if content == 1 and isinstance(value, bytes):
                        path = value
                    elif content == 2 and isinstance(value, int):
                        index = value
                if table is dirs:
                    dirs.append(path)
                else:
                    files.append((path, index))
    else:
        dirs.append(comp_dir if isinstance(comp_dir, bytes) else b"")
        while (d := r.cstr()):
            dirs.append(d)
        while (name := r.cstr()):
            files.append((name, r.uleb()))
            r.uleb()
            r.uleb()
    return [_join(dirs, name, index) for name, index in files]


def _join(dirs: list[bytes], name: bytes, index: int) -> str:
    text = name.decode("utf-8", "replace")
    if text.startswith("/") or not (0 <= index < len(dirs)) or not dirs[index]:
        return text
    return f"{dirs[index].decode('utf-8', 'replace')}/{text}"


def _spelling(point: PerfPoint) -> str:
    text = point.function or ""
    if point.file:
        text += f"@{point.file}" if point.function else point.file
    if point.line:
        text += f":{point.line}"
    if point.offset:
        text += f"+{point.offset}"
    return text
