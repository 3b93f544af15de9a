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
import os
import pickle
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from probelint.arch.x86 import decode as x86

__all__ = ["FactStore", "FunctionFacts"]


_CHANGED = re.compile(rb"[^\0]+")


class FunctionFacts(NamedTuple):
    """What the whole-function rules need, by instruction index."""

    lengths: bytes  # each instruction's length, in walk order
    branches: tuple[tuple[int, int], ...]  # (target, index of the jmp/jcc/loop/jcxz), by target
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
        return cls(bytes(insn.length for insn in insns), tuple(branches), tuple(indirect),
                   bool(insns) and not insns[-1].valid, _differences(file_code, live_code))

    def live(self, file_code: bytes) -> bytes:
        """The function's bytes as the running kernel holds them, from the file's."""
        if not self.patches:
            return file_code
        buf = bytearray(file_code)
        for offset, data in self.patches:
            buf[offset : offset + len(data)] = data
        return bytes(buf)


def _differences(old: bytes, new: bytes) -> tuple[tuple[int, bytes], ...]:
    """Runs of `new` that differ from `old` (same length), found by C-speed XOR and regex."""
    if old == new:
        return ()
    xor = (int.from_bytes(old, "little") ^ int.from_bytes(new, "little")).to_bytes(len(old), "little")
    return tuple((m.start(), new[m.start() : m.end()]) for m in _CHANGED.finditer(xor))


def _signed(address: int) -> int:
    """SQLite integers are signed 64-bit; kernel addresses have the top bit set."""
    return address - (1 << 64) if address >= 1 << 63 else address


def _unpack(data: bytes) -> FunctionFacts:
    return FunctionFacts(*pickle.loads(data))


class FactStore:
    """``<cache>/index/<index name>.facts.sqlite``: FunctionFacts per (CPU profile, address)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._pending: dict[tuple[str, int], bytes] = {}
        self._fetched: dict[tuple[str, int], FunctionFacts] = {}  # prefetched, handed out once
        self._broken = False
        atexit.register(self.flush)

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is not None and self._pid != os.getpid():
            self._db = None  # a forked worker: SQLite connections must not cross fork(); open its own
        if self._db is None and not self._broken:
            self._pid = os.getpid()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
                self._db.execute("CREATE TABLE IF NOT EXISTS facts (profile TEXT, address INTEGER, data BLOB, "
                                 "PRIMARY KEY (profile, address)) WITHOUT ROWID")
            except (sqlite3.Error, OSError):  # OSError: the directory cannot be made (a file, /proc, ...)
                self._broken = True  # a cache that cannot be used only costs time
                self._db = None
        return self._db

    def get(self, profile: str, address: int) -> FunctionFacts | None:
        fetched = self._fetched.pop((profile, address), None)
        if fetched is not None:
            return fetched
        db = self._connect()
        if db is None:
            return None
        try:
            row = db.execute("SELECT data FROM facts WHERE profile = ? AND address = ?",
                             (profile, _signed(address))).fetchone()
            return _unpack(row[0]) if row is not None else None
        except (sqlite3.Error, pickle.UnpicklingError, EOFError, TypeError, ValueError):
            return None

    def prefetch(self, profile: str, addresses: Sequence[int]) -> None:
        """Read the facts of many functions in a few queries (one query each costs ~15 µs)."""
        db = self._connect()
        wanted = sorted({_signed(a) for a in addresses})
        if db is None or len(wanted) < 2:
            return
        try:
            for k in range(0, len(wanted), 500):  # under SQLite's oldest bound-parameter limit
                chunk = wanted[k : k + 500]
                rows = db.execute(f"SELECT address, data FROM facts WHERE profile = ? AND address IN "
                                  f"({','.join('?' * len(chunk))})", (profile, *chunk))
                for address, data in rows:
                    self._fetched[(profile, address & ((1 << 64) - 1))] = _unpack(data)
        except (sqlite3.Error, pickle.UnpicklingError, EOFError, TypeError, ValueError):
            return

    def put(self, profile: str, address: int, facts: FunctionFacts) -> None:
        fields = (facts.lengths, facts.branches, facts.indirect_jumps, facts.undecodable, facts.patches)
        self._pending[(profile, address)] = pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)

    def flush(self) -> None:
        """Write what this run decoded, in one transaction."""
        if not self._pending:
            return
        rows = [(profile, _signed(address), data) for (profile, address), data in self._pending.items()]
        self._pending.clear()
        db = self._connect()
        if db is None:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO facts VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.rollback()
