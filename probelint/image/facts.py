"""Per-function decode facts, kept per build-id so that a warm run decodes only what it shows.

Decoding a function with iced-x86 costs ~5 µs an instruction in Python, and the rules that look at
a whole function (boundaries for `can_probe`, branch targets for `insn_jump_into_range`, indirect
jumps for `insn_is_indirect_jump`, where the walk gives up) need all of it. What they need is
small: a byte per instruction length plus a few branch entries. `FunctionFacts` is that summary;
`FactStore` keeps it in SQLite beside the build-id index (one row per function and CPU profile:
random access without loading the rest, and safe with concurrent runs). A warm run then decodes
only the instructions a rule or an excerpt actually reads. The facts also keep where the live text
differs from the file (alternatives, paravirt, return thunks, sealed ENDBRs: `patch_live_text`),
so that a warm run does not rebuild the CPU's view of every function it touches.
"""

from __future__ import annotations

import re
import struct
import zlib
from array import array
from collections.abc import Sequence
from typing import NamedTuple

from probelint.arch.x86 import decode as x86
from probelint.image.cachefs import CacheDir
from probelint.image.sqlite_store import SqliteStore

__all__ = ["FactStore", "FunctionFacts"]


_CHANGED = re.compile(rb"[^\0]+")


class FunctionFacts(NamedTuple):
    """What the whole-function rules need, by instruction index."""

    lengths: bytes  # each instruction's length, in walk order
    # the jmp/jcc/loop/jcxz: their targets, sorted, and each one's instruction index (two columns
    # bisected as they are: a tuple per branch cost a warm run's unpacking most of its time)
    branch_targets: tuple[int, ...]
    branch_insns: tuple[int, ...]
    indirect_jumps: tuple[int, ...]  # indexes of indirect jumps
    undecodable: bool  # the walk gave up at the last instruction
    patches: tuple[tuple[int, bytes], ...] = ()  # (offset, live bytes) where the live text differs from the file

    @classmethod
    def of(cls, insns: Sequence[x86.Insn], file_code: bytes, live_code: bytes) -> FunctionFacts:
        branches: list[tuple[int, int]] = []
        indirect: list[int] = []
        jump_target, is_indirect_jump = x86.jump_target, x86.is_indirect_jump
        for k, insn in enumerate(insns):  # one pass: a cold run summarises thousands of functions
            target = jump_target(insn)
            if target is not None:
                branches.append((target, k))
            elif is_indirect_jump(insn):
                indirect.append(k)
        branches.sort(key=lambda p: p[0])
        return cls(bytes(insn.length for insn in insns), tuple(t for t, _ in branches), tuple(k for _, k in branches),
                   tuple(indirect), bool(insns) and not insns[-1].valid, _differences(file_code, live_code))

    def live(self, file_code: bytes) -> bytes:
        """The function's bytes as the running kernel holds them, from the file's."""
        if not self.patches:
            return file_code
        buf = bytearray(file_code)
        for offset, data in self.patches:
            buf[offset : offset + len(data)] = data
        return bytes(buf)


_MAX_RUNS = 4  # more differing runs are kept as one: a module function has a relocated field every few instructions


def _differences(old: bytes, new: bytes) -> tuple[tuple[int, bytes], ...]:
    """Runs of `new` that differ from `old` (same length), found by C-speed XOR and regex; many
    runs as the one span from the first to the last (each run costs a warm read a loop step)."""
    if old == new:
        return ()
    xor = (int.from_bytes(old, "little") ^ int.from_bytes(new, "little")).to_bytes(len(old), "little")
    runs = [m.span() for m in _CHANGED.finditer(xor)]
    if len(runs) > _MAX_RUNS:
        runs = [(runs[0][0], runs[-1][1])]
    return tuple((start, new[start:end]) for start, end in runs)


def _signed(address: int) -> int:
    """SQLite integers are signed 64-bit; kernel addresses have the top bit set."""
    return address - (1 << 64) if address >= 1 << 63 else address


_SCHEMA = ("CREATE TABLE facts (profile TEXT NOT NULL, address INTEGER NOT NULL, lengths BLOB NOT NULL, "
           "branches BLOB NOT NULL, indirect BLOB NOT NULL, undecodable INTEGER NOT NULL, patches BLOB NOT NULL, "
           "crc INTEGER NOT NULL, PRIMARY KEY (profile, address)) WITHOUT ROWID")
_COLUMNS = "lengths, branches, indirect, undecodable, patches, crc"
_LENGTHS = bytes(range(1, x86.MAX_INSN_SIZE + 1))  # what an instruction length can be
_PATCH = struct.Struct("<II")  # offset, length of each patch's bytes, which follow it


class BadRow(ValueError):
    """A fact row that does not describe the function it is stored for."""


def _pack(facts: FunctionFacts) -> tuple[bytes, bytes, bytes, int, bytes]:
    branches = array("Q", facts.branch_targets).tobytes() + array("I", facts.branch_insns).tobytes()
    patches = b"".join(_PATCH.pack(offset, len(data)) + data for offset, data in facts.patches)
    return facts.lengths, branches, array("I", facts.indirect_jumps).tobytes(), int(facts.undecodable), patches


def _row_crc(profile: str, address: int, file_code: bytes, fields: Sequence[object]) -> int:
    """CRC-32 binding a row to its key and to the function's bytes in the file: a row of another
    function, another build or a flipped byte is refused (corruption, not forgery: see cache.py)."""
    crc = zlib.crc32(f"{profile}\0{address}\0{fields[3]}\0".encode())
    for part in (file_code, *fields[:3], fields[4]):
        crc = zlib.crc32(part, crc)  # type: ignore[arg-type]
    return crc


def _unpack(profile: str, address: int, file_code: bytes, row: Sequence[object]) -> FunctionFacts:
    """The facts of a row, after checking every column's type and bound; BadRow otherwise."""
    lengths, branches, indirect, undecodable, patches, crc = row
    if not (isinstance(lengths, bytes) and isinstance(branches, bytes) and isinstance(indirect, bytes)
            and isinstance(patches, bytes) and undecodable in (0, 1) and type(crc) is int):
        raise BadRow("a column of the wrong type")
    if crc != _row_crc(profile, address, file_code, row[:5]):
        raise BadRow("checksum mismatch")
    n = len(lengths)
    if len(branches) % 12 or len(indirect) % 4 or lengths.translate(None, _LENGTHS):
        raise BadRow("malformed instruction lengths or branches")
    split = len(branches) // 12 * 8
    targets, at = array("Q", branches[:split]), array("I", branches[split:])
    jumps = array("I", indirect)
    if (at and max(at) >= n) or (jumps and max(jumps) >= n):
        raise BadRow("a branch beyond the function's instructions")
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(patches):
        if pos + _PATCH.size > len(patches):
            raise BadRow("a truncated patch")
        offset, size = _PATCH.unpack_from(patches, pos)
        data = patches[pos + _PATCH.size : pos + _PATCH.size + size]
        if len(data) != size or offset + size > len(file_code):
            raise BadRow("a patch beyond the function")
        found.append((offset, data))
        pos += _PATCH.size + size
    return FunctionFacts(lengths, tuple(targets), tuple(at), tuple(jumps), bool(undecodable), tuple(found))


class FactStore(SqliteStore):
    """``<cache>/index/<index name>.facts.sqlite``: FunctionFacts per (CPU profile, address)."""

    schema = _SCHEMA
    table = "facts"
    columns = 8
    kind = "fact store"

    def __init__(self, directory: CacheDir, name: str) -> None:
        super().__init__(directory, name)
        self._fetched: dict[tuple[str, int], Sequence[object]] = {}  # prefetched rows, checked when taken

    def _forget(self) -> None:
        self._fetched.clear()  # rows of the discarded file

    def _checked(self, profile: str, address: int, file_code: bytes, row: Sequence[object]) -> FunctionFacts | None:
        try:
            return _unpack(profile, address, file_code, row)
        except (BadRow, TypeError, ValueError) as exc:
            self._discard(f"a row for {address:#x} fails its checks ({exc})")
            return None

    def get(self, profile: str, address: int, file_code: bytes) -> FunctionFacts | None:
        """The facts of the function at `address` whose file bytes are `file_code`, if stored."""
        row = self._fetched.pop((profile, address), None)
        if row is None:
            found = self.select(f"SELECT {_COLUMNS} FROM facts WHERE profile = ? AND address = ?",
                                (profile, _signed(address)))
            row = next(iter(found), None)
        return self._checked(profile, address, file_code, row) if row is not None else None

    def prefetch(self, profile: str, addresses: Sequence[int]) -> None:
        """Read the rows of many functions in a few queries (one query each costs ~15 µs)."""
        wanted = sorted({_signed(a) for a in addresses})
        if len(wanted) < 2:
            return
        for k in range(0, len(wanted), 500):  # under SQLite's oldest bound-parameter limit
            chunk = wanted[k : k + 500]
            for address, *row in self.select(f"SELECT address, {_COLUMNS} FROM facts WHERE profile = ? AND address "
                                             f"IN ({','.join('?' * len(chunk))})", (profile, *chunk)):
                if type(address) is int:
                    self._fetched[(profile, address & ((1 << 64) - 1))] = row

    def put(self, profile: str, address: int, facts: FunctionFacts, file_code: bytes) -> None:
        fields = _pack(facts)
        self.queue((profile, _signed(address), *fields, _row_crc(profile, address, file_code, fields)))
