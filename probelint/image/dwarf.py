"""A vmlinux's DWARF, read as libdw and perf's dwarf-aux.c see it: compilation units, their line
tables (libdw's row order), and the tree of subprograms, inline instances and lexical blocks.

Only what a lookup needs is parsed: a unit index (offset, name and file table of every unit,
from the unit and line-program headers alone) is built once and can be kept by the caller (it is
plain data), functions are found through the symbol table and .debug_aranges, and a unit's DIE
tree is read only when a lookup reaches it.
"""

from __future__ import annotations

import bisect
import fnmatch
import mmap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo

if TYPE_CHECKING:
    from probelint.image.kernel import Image

__all__ = ["Die", "Dwarf", "Unit", "strtailcmp"]

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
class Die:
    """A subprogram, inlined subroutine or lexical block: what perf's walks look at."""

    tag: str  # "S" subprogram, "I" inlined subroutine, "B" lexical block
    offset: int
    attrs: dict[str, Any]
    ranges: list[tuple[int, int]]
    entry: int | None  # dwarf_entrypc: DW_AT_entry_pc, else DW_AT_low_pc
    children: list[Die] = field(default_factory=list)

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


class Unit:
    """One compilation unit: its line table (libdw's order) and function tree."""

    def __init__(self, owner: Dwarf, cu: Any) -> None:
        dwarf = owner.info
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
        self.by_offset: dict[int, Die] = {}
        self.root = Die("U", top.offset, {}, [], None)
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
                sub = Die(tag, child.offset, attrs, _ranges(child, ranges, cu, cu_low), entry)
                node.children.append(sub)
                self.by_offset[child.offset] = sub
                if child.has_children:
                    kids.append((child, sub))
            pending.extend(reversed(kids))

    def file(self, index: int) -> str | None:
        return self.files[index] if 0 <= index < len(self.files) else None

    def integrate(self, die: Die, name: str) -> Any:
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

    def name(self, die: Die) -> str | None:
        value = self.integrate(die, "DW_AT_name")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    def match_name(self, die: Die, glob: str) -> bool:
        """die_match_name: the name, else the linkage name, matches."""
        for attr in ("DW_AT_name", "DW_AT_linkage_name"):
            value = self.integrate(die, attr)
            if isinstance(value, bytes) and fnmatch.fnmatchcase(value.decode("utf-8", "replace"), glob):
                return True
        return False

    def decl_file(self, die: Die) -> str | None:
        index = self.integrate(die, "DW_AT_decl_file")
        return self.file(index - self._file_base) if isinstance(index, int) else None

    def decl_line(self, die: Die) -> int | None:
        return self.integrate(die, "DW_AT_decl_line")

    def call_file(self, die: Die) -> str | None:
        index = self.integrate(die, "DW_AT_call_file")
        return self.file(index - self._file_base) if isinstance(index, int) else None

    def funcs(self) -> list[Die]:
        """dwarf_getfuncs on a C unit: defining subprograms, pre-order through scopes."""
        return [d for d in self.root.walk() if d.tag == "S" and "DW_AT_declaration" not in d.attrs]

    def realfunc(self, addr: int) -> Die | None:  # die_find_realfunc
        return next((d for d in self.funcs() if d.haspc(addr)), None)

    def _inline_at(self, scope: Die, addr: int) -> Die | None:
        """die_find_child(__die_find_inline_cb): the first inlined subroutine holding addr."""
        return next((d for d in scope.walk() if d.tag == "I" and d.haspc(addr)), None)

    def functions_at(self, addr: int) -> list[Die]:
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


class Dwarf:
    """The DWARF of one image: the unit index, and units parsed on demand."""

    def __init__(self, image: Image, index: dict[str, Any] | None = None) -> None:
        self.image = image
        elf = image.elf
        info = elf.section(".debug_info")
        self.present = info is not None and info.size > 0 and elf.section(".debug_line") is not None
        self.index_built = False  # the index was built here, not given: worth keeping
        self._index = index
        self._info: DWARFInfo | None = None
        self._units: dict[int, Unit] = {}

    @property
    def info(self) -> DWARFInfo:
        """pyelftools' view, for the units a lookup reaches."""
        if self._info is None:
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
            self._info = DWARFInfo(config, *(section(n) if n else None for n in names))
        return self._info

    @property
    def index(self) -> dict[str, Any]:
        """The unit index, built from unit and line-program headers only: every path once
        (``paths``), each unit as (offset, name, indexes into paths)."""
        if self._index is None:
            elf = self.image.elf
            sections = {n: elf.section_bytes(s) for n in (".debug_info", ".debug_abbrev", ".debug_line", ".debug_str",
                                                          ".debug_line_str") if (s := elf.section(n)) is not None}
            paths: dict[str, int] = {}
            units: list[tuple[int, str, list[int]]] = []
            for offset, name, files in _headers(sections):
                units.append((offset, name, [paths.setdefault(f, len(paths)) for f in files]))
            self._index = {"paths": list(paths), "units": units}
            self.index_built = True
        return self._index

    @property
    def index_if_read(self) -> dict[str, Any] | None:
        """The unit index if it was given or a lookup has needed it (a caller keeping it builds none)."""
        return self._index

    def unit_files(self, cu_offset: int) -> list[str]:
        index = self.index
        for offset, _, files in index["units"]:
            if offset == cu_offset:
                return [index["paths"][f] for f in files]
        return []

    def unit(self, cu_offset: int) -> Unit:
        unit = self._units.get(cu_offset)
        if unit is None:
            unit = self._units[cu_offset] = Unit(self, self.info.get_CU_at(cu_offset))
        return unit

    def units_with_file(self, file: str) -> list[tuple[int, str]]:
        """(unit offset, cu_find_realpath) of each unit whose file table has a file ending in `file`."""
        index = self.index
        paths = index["paths"]
        matching = {i for i, p in enumerate(paths) if strtailcmp(p, file)}
        out = []
        for offset, _, files in index["units"]:
            first = next((f for f in files if f in matching), None)
            if first is not None:
                out.append((offset, paths[first]))
        return out

    def units_of_function(self, name: str) -> list[int] | None:
        """Units holding an out-of-line copy of `name` (or of its .constprop/.isra/.part pieces):
        symbol table, then .debug_aranges (None: the image has no .debug_aranges)."""
        symbols = self.image.symbols
        addresses = {symbols.addresses[i] for i, n in enumerate(symbols.names)
                     if n == name or n.startswith(name + ".")}
        aranges = self.info.get_aranges()
        if aranges is None:
            return None
        found = set()
        for addr in addresses:
            offset = aranges.cu_offset_at_addr(addr)
            if offset is not None:
                found.add(offset)
        return sorted(found)


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

