"""A SQLite file of the cache, opened only once it is known to be ours.

The file is opened only after it is checked (a regular file of ours, 0600, not a link: see
image/cachefs.py) and its schema is ours exactly; anything else at its name (a link, another
program's SQLite file, a row that fails its checks) is discarded with one line and rebuilt. One
file, one table; rows are plain columns (never code) that each store checks when it reads them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterable, Sequence

from probelint.image.cachefs import CacheDir, note, unsafe

__all__ = ["SqliteStore"]


class SqliteStore:
    """``<cache>/<sub>/<name>``: one table, `schema` exactly. Rows written by `queue` are kept in
    memory and written by `flush` (at exit, or by a forked worker before it leaves) in one
    transaction, `INSERT OR IGNORE`: a row two processes computed is the same row."""

    schema: str  # the CREATE TABLE statement, compared with sqlite_master's as it is stored
    table: str
    columns: int
    kind: str  # what the store is, for the line saying it was discarded: "fact store"

    def __init__(self, directory: CacheDir, name: str) -> None:
        self.directory = directory
        self.name = name
        self._db: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._pid = os.getpid()
        self._queued: list[Sequence[object]] = []
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
        if st is None or not stat.S_ISREG(st.st_mode) or unsafe(st) is not None:
            raise OSError("changed while opened")
        self._inode = (st.st_dev, st.st_ino)
        uri = "file:" + urllib.parse.quote(str(directory.path / name)) + "?mode=rw"
        db = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA trusted_schema = OFF")
            # a cache, not a record: a commit need not reach the disk before the run goes on
            # (its fsyncs cost a writing run ~3 ms here, more on a busy disk). A process killed
            # mid-write is still undone by the journal; a file torn by a power loss fails
            # SQLite's checks or the rows': discarded
            db.execute("PRAGMA synchronous = OFF")
            # A store that has its table is only read: a forked checker and its parent open it at
            # the same moment, and a write lock taken by both made one wait in SQLite's busy
            # handler (1-5 ms sleeps). A new file's table is made under the write lock: two
            # runs may both find it empty, and only one of them may create it.
            tables = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            if not tables:
                db.execute("BEGIN IMMEDIATE")
                if not db.execute("SELECT type, name, sql FROM sqlite_master").fetchall():
                    db.execute(self.schema)
                db.execute("COMMIT")
                tables = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            if tables != [("table", self.table, self.schema)]:
                raise sqlite3.DatabaseError(f"not probelint's {self.kind}")
        except BaseException:
            db.close()
            raise
        return db

    def _discard(self, why: str) -> None:
        """Remove the store at our name, if it is still the file this process opened (or no
        file of ours at all): workers that hit the same bad file say it once between them."""
        self._forget()
        self.close()
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

    def _forget(self) -> None:
        """Drop what was read from a file being discarded."""

    def select(self, sql: str, params: Sequence[object] = ()) -> Iterable[Sequence[object]]:
        """The rows of a query, or none at all if the store cannot be read (then discarded)."""
        db = self._connect()
        if db is None:
            return []
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            self._discard(str(exc))
            return []

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def queue(self, row: Sequence[object]) -> None:
        self._queued.append(row)

    def flush(self) -> None:
        """Write the queued rows, in one transaction."""
        if not self._queued:
            return
        rows, self._queued = self._queued, []
        db = self._connect()
        if db is None:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(f"INSERT OR IGNORE INTO {self.table} VALUES ({', '.join('?' * self.columns)})", rows)
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.rollback()
