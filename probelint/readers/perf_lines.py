"""perf's source-line probe points resolved through DWARF, as `perf probe` resolves them.

Model of tools/perf/util/probe-finder.c (Linux 6.1, the perf Debian ships) and its helpers in
dwarf-aux.c, on the DWARF of one vmlinux (read by `probelint.image.dwarf`):

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

Only the units involved are parsed (`probelint.image.dwarf`); its unit index and the results are
kept by build-id.

Not modelled: lazy patterns (``FUNC;PTN``), perf's retry through `get_alternative_probe_event`,
units reached only through an inline copy of FUNC in another unit (FUNC:RLN of a header inline
function, found by perf in every unit that inlines it; here only in units holding a symbol of
FUNC), and FILE:LINE of a file included by more than `MAX_UNITS` units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elftools.common.exceptions import DWARFError, ELFParseError

from probelint.image.cache_format import IndexFormatError, field
from probelint.image.dwarf import Die, Dwarf, Unit, strtailcmp
from probelint.readers.spec import PerfPoint

if TYPE_CHECKING:
    from probelint.image.cache import IndexCache
    from probelint.image.kernel import Image

__all__ = ["MAX_UNITS", "DwarfLines", "PerfPoint", "Resolution"]

MAX_UNITS = 32  # units walked for one FILE:LINE: a header included everywhere is not resolved
_FORMAT = 2


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


class DwarfLines:
    """Resolution of perf source-line probe points against one vmlinux's DWARF."""

    def __init__(self, image: Image, cache: IndexCache | None = None) -> None:
        self.image = image
        self.cache = cache
        self.build_id = image.elf.build_id()
        self.dwarf = Dwarf(image)
        # a --strip-debug copy shares the -dbg file's build-id: it must neither read nor write its results
        if not self.dwarf.present:
            self.cache = cache = None
        self._results: dict[PerfPoint, Resolution] = {}
        stored = cache.load(self.build_id) if cache is not None and self.build_id else None
        if stored is not None and cache is not None:
            try:
                units, self._results = _from_cache(stored)
                self.dwarf = Dwarf(image, units)
            except IndexFormatError as exc:
                cache.discard(self.build_id, str(exc))
        self._dirty = False

    def resolve(self, point: PerfPoint) -> Resolution:
        cached = self._results.get(point)
        if cached is not None:
            return cached
        if not self.dwarf.present:
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
        index = self.dwarf.index_if_read
        if self.cache is not None and self.build_id and (self._dirty or self.dwarf.index_built) and index is not None:
            results = [[*point, list(r.addresses), r.error, r.unsupported] for point, r in self._results.items()]
            self.cache.store(self.build_id, {"units": index, "results": results, "format": _FORMAT})
            self._dirty = self.dwarf.index_built = False

    def _find(self, point: PerfPoint) -> list[int]:
        found: list[int] = []
        if point.function is None:
            file = point.file or ""
            units = self.dwarf.units_with_file(file)
            if not units:
                raise ResolveError(f"no compilation unit has a source file {file}")
            if len(units) > MAX_UNITS:
                raise ResolveError(f"{file} is in {len(units)} compilation units: perf walks the lines of each, "
                                   f"probelint resolves files of at most {MAX_UNITS} units", unsupported=True)
            for offset, realpath in units:
                self._by_line(self.dwarf.unit(offset), realpath, point.line, None, found)
        else:
            units_of = self.dwarf.units_of_function(point.function)
            if units_of is None:
                raise ResolveError("the image has no .debug_aranges: probelint finds functions through it",
                                   unsupported=True)
            if not units_of and point.file:
                units_of = [o for o, _ in self.dwarf.units_with_file(point.file)][: MAX_UNITS + 1]
            if not units_of:
                raise ResolveError(f"{point.function} has no symbol: an inline-only function is found only "
                                   "with FUNC@FILE", unsupported=True)
            for offset in units_of:
                unit = self.dwarf.unit(offset)
                if point.file and not any(strtailcmp(f, point.file) for f in unit.files):
                    continue
                self._by_function(unit, point, found)
        if not found:
            raise ResolveError(f"perf finds no code for {_spelling(point)} (Probe point not found)")
        return found

    def _by_function(self, unit: Unit, point: PerfPoint, found: list[int]) -> None:
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

    def _instances(self, unit: Unit, origin: Die, *, every: bool = False) -> list[Die]:
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

    def _by_line(self, unit: Unit, fname: str | None, line: int, function: str | None, found: list[int]) -> None:
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

    def _best_scope(self, unit: Unit, addr: int, function: str | None, fname: str, line: int) -> Die | None:
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

    def _add(self, unit: Unit, scope: Die, addr: int, found: list[int]) -> None:
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


def _spelling(point: PerfPoint) -> str:
    text = point.function or ""
    if point.file:
        text += f"@{point.file}" if point.function else point.file
    if point.line:
        text += f":{point.line}"
    if point.offset:
        text += f"+{point.offset}"
    return text


def _from_cache(tree: Any) -> tuple[dict[str, Any], dict[PerfPoint, Resolution]]:
    """The unit index and results kept by `DwarfLines.save`, each checked for its type and
    bounds (plain JSON types in the index file: image/cache_format.py); IndexFormatError otherwise."""
    if not isinstance(tree, dict) or tree.get("format") != _FORMAT:
        raise IndexFormatError("not this version's DWARF-lines cache")
    units = field(tree, "units", dict)
    paths = field(units, "paths", list)
    if not all(isinstance(p, str) for p in paths):
        raise IndexFormatError("units: paths")
    for unit in field(units, "units", list):
        if not (isinstance(unit, list) and len(unit) == 3 and type(unit[0]) is int and isinstance(unit[1], str)
                and isinstance(unit[2], list) and all(type(f) is int and 0 <= f < len(paths) for f in unit[2])):
            raise IndexFormatError("units: a unit")
    results = {}
    for item in field(tree, "results", list):
        if not (isinstance(item, list) and len(item) == 8):
            raise IndexFormatError("results: an entry")
        function, file, line, offset, every, addresses, error, unsupported = item
        if not (all(v is None or isinstance(v, str) for v in (function, file, error)) and type(line) is int
                and type(offset) is int and isinstance(every, bool) and isinstance(unsupported, bool)
                and isinstance(addresses, list) and all(type(a) is int for a in addresses)):
            raise IndexFormatError("results: an entry")
        results[PerfPoint(function, file, line, offset, every)] = Resolution(tuple(addresses), error, unsupported)
    return units, results
