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

import atexit
import contextlib
import os
import re
import sqlite3
import stat
import struct
import urllib.parse
import zlib
from array import array
from collections.abc import Sequence
from typing import NamedTuple

from probelint.arch.x86 import decode as x86
from probelint.image.cachefs import CacheDir, note, unsafe

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


class FactStore:
    """``<cache>/index/<index name>.facts.sqlite``: FunctionFacts per (CPU profile, address).

    The file is opened only after it is checked (a regular file of ours, 0600, not a link: see
    image/cachefs.py) and its schema is ours exactly; anything else at its name (a link, another
    program's SQLite file, a row that fails its checks) is discarded with one line and rebuilt."""

    def __init__(self, directory: CacheDir, name: str) -> None:
        self.directory = directory
        self.name = name
        self._db: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._pid = os.getpid()
        self._pending: dict[tuple[str, int], tuple[bytes, bytes, bytes, int, bytes]] = {}
        self._fetched: dict[tuple[str, int], Sequence[object]] = {}  # prefetched rows, checked when taken
        self._crcs: dict[tuple[str, int], int] = {}
        self._broken = False
        atexit.register(self.flush)

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is not None and self._pid != os.getpid():
            self._db = None  # a forked worker: SQLite connections must not cross fork(); open its own
        if self._db is None and not self._broken:
            self._pid = os.getpid()
            try:
                self._db = self._open()
            except PermissionError:  # another user's file: said once, the store is not used
                self._broken = True
            except (sqlite3.Error, OSError) as exc:
                self._discard(str(exc))
                try:
                    self._db = self._open()
                except (sqlite3.Error, OSError):
                    self._broken = True  # a cache that cannot be used only costs time
        return self._db

    def _open(self) -> sqlite3.Connection:
        directory, name = self.directory, self.name
        why = directory.check(name)
        if why is not None:
            raise OSError(why)
        with contextlib.suppress(FileExistsError):
            os.close(directory.create(name))
        st = directory.lstat(name)
        if st is None or _unsafe_store(st):
            raise OSError("changed while opened")
        self._inode = (st.st_dev, st.st_ino)
        uri = "file:" + urllib.parse.quote(str(directory.path / name)) + "?mode=rw"
        db = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA trusted_schema = OFF")
            # A store that has its table is only read: a forked checker and its parent open it at
            # the same moment, and a write lock taken by both made one wait in SQLite's busy
            # handler (1-5 ms sleeps). A new file's table is made under the write lock: two
            # runs may both find it empty, and only one of them may create it.
            tables = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            if not tables:
                db.execute("BEGIN IMMEDIATE")
                if not db.execute("SELECT type, name, sql FROM sqlite_master").fetchall():
                    db.execute(_SCHEMA)
                db.execute("COMMIT")
                tables = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            if tables != [("table", "facts", _SCHEMA)]:
                raise sqlite3.DatabaseError("not probelint's fact store")
        except BaseException:
            db.close()
            raise
        return db

    def _discard(self, why: str) -> None:
        """Remove the store at our name, if it is still the file this process opened (or no
        file of ours at all): workers that hit the same bad file say it once between them."""
        self._fetched.clear()  # rows of the discarded file
        if self._db is not None:
            self._db.close()
            self._db = None
        st = self.directory.lstat(self.name)
        if st is None or (self._inode is not None and (st.st_dev, st.st_ino) != self._inode):
            return
        note(f"cache file {self.directory.shown(self.name)}: {why}: discarded, rebuilt")
        self._inode = None
        try:
            self.directory.remove(self.name)
            for suffix in ("-journal", "-wal", "-shm"):
                self.directory.remove(self.name + suffix)
        except OSError:
            self._broken = True

    def _checked(self, profile: str, address: int, file_code: bytes, row: Sequence[object]) -> FunctionFacts | None:
        try:
            return _unpack(profile, address, file_code, row)
        except (BadRow, TypeError, ValueError) as exc:
            self._discard(f"a row for {address:#x} fails its checks ({exc})")
            return None

    def get(self, profile: str, address: int, file_code: bytes) -> FunctionFacts | None:
        """The facts of the function at `address` whose file bytes are `file_code`, if stored."""
        fetched = self._fetched.pop((profile, address), None)
        if fetched is not None:
            return self._checked(profile, address, file_code, fetched)
        db = self._connect()
        if db is None:
            return None
        try:
            row = db.execute(f"SELECT {_COLUMNS} FROM facts WHERE profile = ? AND address = ?",
                             (profile, _signed(address))).fetchone()
        except sqlite3.Error as exc:
            self._discard(str(exc))
            return None
        return self._checked(profile, address, file_code, row) if row is not None else None

    def prefetch(self, profile: str, addresses: Sequence[int]) -> None:
        """Read the rows of many functions in a few queries (one query each costs ~15 µs)."""
        db = self._connect()
        wanted = sorted({_signed(a) for a in addresses})
        if db is None or len(wanted) < 2:
            return
        try:
            for k in range(0, len(wanted), 500):  # under SQLite's oldest bound-parameter limit
                chunk = wanted[k : k + 500]
                rows = db.execute(f"SELECT address, {_COLUMNS} FROM facts WHERE profile = ? AND address IN "
                                  f"({','.join('?' * len(chunk))})", (profile, *chunk))
                for address, *row in rows:
                    if type(address) is int:
                        self._fetched[(profile, address & ((1 << 64) - 1))] = row
        except sqlite3.Error as exc:
            self._discard(str(exc))

    def put(self, profile: str, address: int, facts: FunctionFacts, file_code: bytes) -> None:
        fields = _pack(facts)
        self._pending[(profile, address)] = fields
        self._crcs[(profile, address)] = _row_crc(profile, address, file_code, fields)

    def flush(self) -> None:
        """Write what this run decoded, in one transaction."""
        if not self._pending:
            return
        rows = [(profile, _signed(address), *fields, self._crcs.pop((profile, address)))
                for (profile, address), fields in self._pending.items()]
        self._pending.clear()
        db = self._connect()
        if db is None:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO facts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.rollback()


def _unsafe_store(st: os.stat_result) -> bool:
    return not stat.S_ISREG(st.st_mode) or unsafe(st) is not None
