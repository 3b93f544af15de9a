"""kallsyms, rebuilt from a vmlinux symbol table exactly as the kernel builds and searches it.

Build: scripts/link-vmlinux.sh -> scripts/mksysmap (`nm -n` minus types a/N/U/w and some name
patterns) -> scripts/kallsyms.c (`is_ignored_symbol`, then `compare_symbols` ordering).
Search: kernel/kallsyms.c `get_symbol_pos` (greatest address <= addr, first alias in table
order) and `kallsyms_lookup_size_offset` (size = distance to the next strictly higher symbol, so
alignment padding belongs to the function before it; linker-script markers such as
``__entry_text_end`` are symbols too and cut sizes). `kallsyms_lookup_name` returns the lowest
address among equal names.
"""

from __future__ import annotations

import bisect
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any, NamedTuple, overload

from probelint.image.cache_format import IndexFormatError, field, typed_array
from probelint.image.elf import (
    SHN_ABS,
    SHN_COMMON,
    SHN_LORESERVE,
    SHN_UNDEF,
    SHT_NOBITS,
    STB_LOCAL,
    STB_WEAK,
    STT_FILE,
    STT_OBJECT,
    STT_SECTION,
    ElfFile,
    ElfSymbol,
)

__all__ = ["HashIndex", "KSym", "Kallsyms", "NameMap", "PackedStrings", "SymbolTable", "kallsyms_from_nm",
           "kallsyms_from_vmlinux", "looks_linker_provided", "nm_entries", "nm_type"]

# scripts/kallsyms.c is_ignored_symbol()
_IGNORED_NAMES = frozenset({
    "kallsyms_addresses", "kallsyms_offsets", "kallsyms_relative_base", "kallsyms_num_syms",
    "kallsyms_names", "kallsyms_markers", "kallsyms_token_table", "kallsyms_token_index",
    "kallsyms_seqs_of_names", "_SDA_BASE_", "_SDA2_BASE_",
})
_IGNORED_PREFIXES = (
    "__efistub_", "__kvm_nvhe_$", "__kvm_nvhe_.L", "__AArch64ADRPThunk_", "__ARMV5PILongThunk_",
    "__ARMV7PILongThunk_", "__ThumbV7PILongThunk_", "__LA25Thunk_", "__microLA25Thunk_", "__kcfi_typeid_",
)
_IGNORED_SUFFIXES = ("_from_arm", "_from_thumb", "_veneer")
_IGNORED_MATCHES = (".long_branch.", ".plt_branch.")
_KEPT_ABSOLUTE = frozenset({"__kernel_syscall_via_break", "__kernel_syscall_via_epc", "__kernel_sigtramp", "__gp"})
# scripts/mksysmap
_MKSYSMAP_PREFIXES = ("$", ".L", "__crc_", "__kstrtab_", "__kstrtabns_")


class KSym(NamedTuple):
    """A kallsyms entry: what `kallsyms_lookup_size_offset` reports for an address in it."""

    name: str
    address: int
    size: int
    type: str  # nm letter

    @property
    def end(self) -> int:
        return self.address + self.size


def nm_type(sym: ElfSymbol, elf: ElfFile) -> str:
    """The letter `nm` prints for `sym` (binutils bfd_decode_symclass for ELF)."""
    if sym.shndx == SHN_UNDEF:
        return "w" if sym.bind == STB_WEAK else "U"
    if sym.shndx == SHN_COMMON:
        return "C"
    if sym.bind == STB_WEAK:
        return "V" if sym.type == STT_OBJECT else "W"
    if sym.shndx == SHN_ABS:
        letter = "a"
    elif sym.shndx >= SHN_LORESERVE or sym.shndx >= len(elf.sections):
        letter = "?"
    else:
        sec = elf.sections[sym.shndx]
        if not sec.is_alloc:
            letter = "n"
        elif sec.is_exec:
            letter = "t"
        elif sec.type == SHT_NOBITS:
            letter = "b"
        elif sec.is_write:
            letter = "d"
        else:
            letter = "r"
    return letter if sym.bind == STB_LOCAL else letter.upper()


def _kept_by_mksysmap(name: str, letter: str) -> bool:
    if letter in "aNUw" or name == "L0":
        return False
    return not name.startswith(_MKSYSMAP_PREFIXES)


def _ignored_by_kallsyms(name: str, letter: str) -> bool:
    if name in _IGNORED_NAMES or name.startswith(_IGNORED_PREFIXES) or name.endswith(_IGNORED_SUFFIXES):
        return True
    if any(m in name for m in _IGNORED_MATCHES) or letter in "UuNn":
        return True
    return letter in "Aa" and name not in _KEPT_ABSOLUTE


def looks_linker_provided(name: str) -> bool:
    """scripts/kallsyms.c may_be_linker_script_provide_symbol()."""
    if len(name) < 8 or not name.startswith("__"):
        return False
    return (
        name.startswith(("__start_", "__stop_", "__end_"))
        or name.endswith(("_start", "_end"))
    )


def _sort_key(entry: tuple[int, str, str, int]) -> tuple[int, bool, bool, int, int]:
    address, name, letter, nm_pos = entry
    underscores = len(name) - len(name.lstrip("_"))
    return (address, letter in "wW", looks_linker_provided(name), underscores, nm_pos)


class SymbolTable:
    """Symbols sorted by address (ties in the kernel's order), with what both the vmlinux and the
    module kallsyms share; subclasses say how long a symbol is (`_entry`)."""

    addresses: Sequence[int]
    names: Sequence[str]
    types: Sequence[str]

    def _index(self) -> None:
        self._name_count = Counter(self.names)

    def __len__(self) -> int:
        return len(self.addresses)

    def count(self, name: str) -> int:
        return self._name_count.get(name, 0)

    def _entry(self, pos: int) -> KSym:
        raise NotImplementedError

    def _first_alias(self, pos: int) -> KSym:
        first = bisect.bisect_left(self.addresses, self.addresses[pos])
        entries = self.__dict__.setdefault("_entries", {})  # rules and messages ask again and again
        sym = entries.get(first)
        if sym is None:
            sym = entries[first] = self._entry(first)
        return sym

    def _containing(self, address: int) -> KSym | None:
        """The first alias at the greatest address <= `address` (get_symbol_pos)."""
        pos = bisect.bisect_right(self.addresses, address) - 1
        return self._first_alias(pos) if pos >= 0 else None

    def positions_of(self, name: str) -> list[int]:
        """Every position holding `name`, lowest first."""
        memo = self.__dict__.setdefault("_positions", {})  # resolution and KP102 ask for the same names
        found = memo.get(name)
        if found is None:
            index = self.__dict__.get("_names_index")
            if index is None:
                index = self.__dict__["_names_index"] = HashIndex((name, pos) for pos, name in enumerate(self.names))
            found = memo[name] = [pos for pos in index.candidates(name) if self.names[pos] == name]
        return found

    def _first_position(self, name: str) -> int | None:
        found = self.positions_of(name)
        return found[0] if found else None

    def pieces_of(self, base: str) -> list[KSym]:
        """The compiler-split pieces of function `base`: ``base.cold``, ``base.part.0``, ..."""
        index = self.__dict__.get("_pieces_index")
        if index is None:
            index = self.__dict__["_pieces_index"] = HashIndex(
                (name.split(".", 1)[0], pos) for pos, name in enumerate(self.names) if "." in name)
        prefix = base + "."
        return [self._first_alias(pos) for pos in index.candidates(base) if self.names[pos].startswith(prefix)]

    def symbols_in(self, start: int, end: int) -> list[KSym]:
        """Distinct symbols (first alias of each address) starting in [start, end)."""
        lo = bisect.bisect_left(self.addresses, start)
        hi = bisect.bisect_left(self.addresses, end)
        out, last = [], None
        for pos in range(lo, hi):
            if self.addresses[pos] != last:
                out.append(self._entry(pos))
                last = self.addresses[pos]
        return out


class Kallsyms(SymbolTable):
    """The vmlinux kallsyms table with the kernel's lookups."""

    def __init__(self, entries: list[tuple[int, str, str]], end_of_last: int) -> None:
        self.addresses = [a for a, _, _ in entries]
        self.names = [n for _, n, _ in entries]
        self.types = [t for _, _, t in entries]
        self._end_of_last = end_of_last
        self._last_lookup: KSym | None = None

    def to_index(self) -> dict[str, Any]:
        # Kept packed in the index and left packed when loaded: rebuilding 87k name strings,
        # 64-bit ints and a name dict object by object was most of a warm run's index load.
        self.positions_of("")  # builds the name index
        self.pieces_of("")  # and the .cold/.part one
        return {"names": PackedStrings.of(self.names).to_index(), "addresses": array("Q", self.addresses),
                "types": "".join(self.types), "end": self._end_of_last,
                "names_index": self.__dict__["_names_index"].to_index(),
                "pieces_index": self.__dict__["_pieces_index"].to_index()}

    @classmethod
    def from_index(cls, data: dict[str, Any]) -> Kallsyms:
        """The table as `to_index` kept it; IndexFormatError unless every part fits the others."""
        self = cls.__new__(cls)
        self.names = PackedStrings.from_index(field(data, "names", dict))
        n = len(self.names)
        self.addresses = typed_array(data, "addresses", "Q", n)
        self.types = field(data, "types", str)
        self._end_of_last = field(data, "end", int)
        if len(self.types) != n:
            raise IndexFormatError("types: not one per symbol")
        self.__dict__.update(_names_index=HashIndex.from_index(field(data, "names_index", dict), n),
                             _pieces_index=HashIndex.from_index(field(data, "pieces_index", dict), n))
        self._last_lookup = None
        return self

    def count(self, name: str) -> int:
        return len(self.positions_of(name))

    def _entry(self, pos: int) -> KSym:
        start = self.addresses[pos]
        nxt = bisect.bisect_right(self.addresses, start, lo=pos)
        end = self.addresses[nxt] if nxt < len(self.addresses) else self._end_of_last
        return KSym(self.names[pos], start, end - start, self.types[pos])

    def lookup(self, address: int) -> KSym | None:
        """kallsyms_lookup_size_offset() for an address already known to be a ksym address."""
        last = self._last_lookup
        if last is not None and last.address <= address < last.end:
            return last  # probes and messages come in runs within one function
        found = self._last_lookup = self._containing(address)
        return found

    def lookup_name(self, name: str) -> KSym | None:
        """kallsyms_lookup_name(): lowest-addressed symbol of that name."""
        memo = self.__dict__.setdefault("_named", {})
        found = memo.get(name)
        if found is None:
            pos = self._first_position(name)
            if pos is None:
                return None
            first = self._first_alias(pos)
            found = memo[name] = (KSym(self.names[pos], first.address, first.size, self.types[pos]), first)
        self._last_lookup = found[1]  # the probe's address is looked up next, most often inside it
        return found[0]

    def address_of(self, name: str) -> int | None:
        pos = self._first_position(name)
        return None if pos is None else self.addresses[pos]  # aliases share the address


class PackedStrings(Sequence[str]):
    """Strings kept as one string and their start offsets: a warm run loads 117k symbol names
    of the index this way in well under a millisecond (one object each: ~8 ms), and reads few."""

    __slots__ = ("_starts", "_text")

    def __init__(self, text: str, starts: array) -> None:
        self._text, self._starts = text, starts  # len(starts) == len(self) + 1

    @classmethod
    def of(cls, items: Sequence[str]) -> PackedStrings:
        return cls("".join(items), array("Q", accumulate(map(len, items), initial=0)))

    def __len__(self) -> int:
        return len(self._starts) - 1

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, int) and 0 <= index < len(self._starts) - 1:  # the lookups' case, first
            return self._text[self._starts[index] : self._starts[index + 1]]
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        if -len(self) <= index < 0:
            return self[index + len(self)]
        raise IndexError(index)

    def to_index(self) -> dict[str, Any]:
        return {"text": self._text, "starts": self._starts}

    @classmethod
    def from_index(cls, data: dict[str, Any]) -> PackedStrings:
        text, starts = field(data, "text", str), typed_array(data, "starts", "Q")
        if not starts or starts[0] != 0 or starts[-1] != len(text):
            raise IndexFormatError("starts: not offsets into the text")
        return cls(text, starts)  # out-of-order starts give wrong names, never an exception


class HashIndex:
    """Positions by a string key as two arrays sorted by (crc32 of the key, position): loaded from
    the index as they are and searched by C bisect, where a dict of 87k names would be rebuilt
    on every start (~7 ms) to look up a few. Keys with equal crc32s are told apart by the caller."""

    def __init__(self, keyed: Iterable[tuple[str, int]]) -> None:
        pairs = sorted((zlib.crc32(key.encode()), pos) for key, pos in keyed)
        self._crcs: Sequence[int] = array("I", (crc for crc, _ in pairs))
        self._positions: Sequence[int] = array("I", (pos for _, pos in pairs))
        self._length = len(pairs) and max(pos for _, pos in pairs) + 1

    def to_index(self) -> dict[str, Any]:
        return {"crcs": self._crcs, "positions": self._positions}

    @classmethod
    def from_index(cls, data: dict[str, Any], length: int) -> HashIndex:
        """An index of positions below `length`, as `to_index` kept it. A position of 2**24 or
        more (no kernel has that many symbols) makes the index malformed; one between `length`
        and that is never returned (`candidates`): the exact test of every position, a max()
        over 170k ints, cost each warm run ~4 ms, and a lie type-correct enough to pass it could
        as well name a wrong symbol (the CRC catches corruption: image/cache_format.py)."""
        self = cls.__new__(cls)
        self._crcs = typed_array(data, "crcs", "I")
        positions = self._positions = typed_array(data, "positions", "I", len(self._crcs))
        if length >= 1 << 24 or positions.cast("B").tobytes()[3::4].strip(b"\0"):  # each one's top byte
            raise IndexFormatError("positions: beyond the table")
        self._length = length
        return self

    def candidates(self, key: str) -> list[int]:
        """Positions whose key may be `key`, lowest first."""
        crc = zlib.crc32(key.encode())
        lo = bisect.bisect_left(self._crcs, crc)
        return [pos for pos in self._positions[lo : bisect.bisect_right(self._crcs, crc, lo)] if pos < self._length]


class NameMap:
    """A read-only name -> address map kept packed in the index: a dict of 30k names costs a
    warm run ~6 ms to rebuild, to look up a few."""

    def __init__(self, items: dict[str, int]) -> None:
        names = list(items)
        self._names = PackedStrings.of(names)
        self._values = array("Q", items.values())
        self._index = HashIndex((name, k) for k, name in enumerate(names))

    def get(self, name: str) -> int | None:
        for k in self._index.candidates(name):
            if self._names[k] == name:
                return self._values[k]
        return None

    def __len__(self) -> int:
        return len(self._names)

    def to_index(self) -> dict[str, Any]:
        return {"names": self._names.to_index(), "values": self._values, "index": self._index.to_index()}

    @classmethod
    def from_index(cls, data: dict[str, Any]) -> NameMap:
        self = cls.__new__(cls)
        self._names = PackedStrings.from_index(field(data, "names", dict))
        self._values = typed_array(data, "values", "Q", len(self._names))
        self._index = HashIndex.from_index(field(data, "index", dict), len(self._names))
        return self


def kallsyms_from_vmlinux(elf: ElfFile, *, kallsyms_all: bool = True) -> Kallsyms:
    """Filter and order the vmlinux .symtab the way link-vmlinux.sh feeds scripts/kallsyms."""
    return kallsyms_from_nm(nm_entries(elf), kallsyms_all=kallsyms_all)


def nm_entries(elf: ElfFile) -> list[tuple[int, str, str]]:
    """(address, name, nm type) of the .symtab symbols `nm` lists."""
    return [(sym.value, sym.name, nm_type(sym, elf)) for sym in elf.symbols()
            if sym.name and sym.type not in (STT_SECTION, STT_FILE)]


def kallsyms_from_nm(entries: Iterable[tuple[int, str, str]], *, kallsyms_all: bool = True) -> Kallsyms:
    """kallsyms from what `nm` lists of a vmlinux (its .symtab, or a System.map or kallsyms dump,
    image/symbol_map.py): mksysmap's and scripts/kallsyms' filters, then the kernel's order."""
    raw = [(address, name, letter) for address, name, letter in entries
           if _kept_by_mksysmap(name, letter) and not _ignored_by_kallsyms(name, letter)]
    # `nm -n` orders equal addresses by name; that order is the final tie-breaker in kallsyms.
    raw.sort(key=lambda e: (e[0], e[1].encode()))
    by_name = {e[1]: e[0] for e in raw}
    if not kallsyms_all:
        raw = _text_only(raw, by_name)
    ordered = sorted(((a, n, t, i) for i, (a, n, t) in enumerate(raw)), key=_sort_key)
    end = by_name.get("_end" if kallsyms_all else "_etext", ordered[-1][0] if ordered else 0)
    return Kallsyms([(a, n, t) for a, n, t, _ in ordered], end)


def _text_only(raw: list[tuple[int, str, str]], by_name: dict[str, int]) -> list[tuple[int, str, str]]:
    """scripts/kallsyms.c symbol_valid() without --all-symbols: text and init text only."""
    ranges = [(by_name.get("_stext", 0), by_name.get("_etext", 0), "_etext"),
              (by_name.get("_sinittext", 0), by_name.get("_einittext", 0), "_einittext")]
    kept = []
    for address, name, letter in raw:
        for lo, hi, end_name in ranges:
            if lo <= address <= hi and (address != hi or name == end_name or name in ("_etext", "_einittext")):
                kept.append((address, name, letter))
                break
    return kept
