"""Per-function decode facts, kept per build-id so that a warm run decodes only what it shows.

Decoding a function with iced-x86 costs ~5 µs an instruction in Python, and the rules that look at
a whole function (boundaries for `can_probe`, branch targets for `insn_jump_into_range`, indirect
jumps for `insn_is_indirect_jump`, where the walk gives up) need all of it. What they need is
small: a byte per instruction length plus a few branch entries. `FunctionFacts` is that summary;
`FactStore` keeps it in SQLite beside the build-id index (one row per function and CPU profile:
random access without loading the rest, and safe with concurrent runs). A warm run then decodes
only the instructions a rule or an excerpt actually reads.
"""

from __future__ import annotations

import atexit
import os
import pickle
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probelint.arch import x86

__all__ = ["FactStore", "FunctionFacts"]


@dataclass(frozen=True, slots=True)
class FunctionFacts:
    """What the whole-function rules need, by instruction index."""

    lengths: bytes  # each instruction's length, in walk order
    branches: tuple[tuple[int, int], ...]  # (target, index of the jmp/jcc/loop/jcxz), by target
    indirect_jumps: tuple[int, ...]  # indexes of indirect jumps
    undecodable: bool  # the walk gave up at the last instruction

    @classmethod
    def of(cls, insns: Sequence[x86.Insn]) -> FunctionFacts:
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
                   bool(insns) and not insns[-1].valid)


def _signed(address: int) -> int:
    """SQLite integers are signed 64-bit; kernel addresses have the top bit set."""
    return address - (1 << 64) if address >= 1 << 63 else address


class FactStore:
    """``<cache>/index/<index name>.facts.sqlite``: FunctionFacts per (CPU profile, address)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._pending: dict[tuple[str, int], bytes] = {}
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
        db = self._connect()
        if db is None:
            return None
        try:
            row = db.execute("SELECT data FROM facts WHERE profile = ? AND address = ?",
                             (profile, _signed(address))).fetchone()
            return FunctionFacts(*pickle.loads(row[0])) if row is not None else None
        except (sqlite3.Error, pickle.UnpicklingError, EOFError, TypeError, ValueError):
            return None

    def put(self, profile: str, address: int, facts: FunctionFacts) -> None:
        fields = (facts.lengths, facts.branches, facts.indirect_jumps, facts.undecodable)
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
