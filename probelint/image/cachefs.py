"""The cache directory as the user's own, the way ssh treats ~/.ssh.

probelint runs as root next to bpftrace and in CI with restored caches, so nothing in the cache is
taken on trust: directories are created 0700 and files 0600; a directory or file owned by another
user, or writable by group or others, makes the whole cache unused for the run (one line on
stderr: the cache is refused, never the run); every name inside is opened relative to the checked
directory's descriptor with O_NOFOLLOW, so a planted symbolic link is never followed; files are
written under a fresh O_EXCL temporary name and renamed into place. The cache root itself may be a
link (the user chose that path): its target is checked like the rest.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import sys
import time
from pathlib import Path

__all__ = ["CacheDir", "note", "unsafe"]

_MAP_FROM = 1 << 20  # bytes: smaller files are read (a mapping costs more than their copy)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_said: set[str] = set()


def note(message: str) -> None:
    """One line on stderr about the cache, once per process: it never stops a run."""
    if message not in _said:
        _said.add(message)
        print(f"probelint: warning: {message}", file=sys.stderr)


def unsafe(st: os.stat_result) -> str | None:
    """Why a directory or file of the cache must not be trusted, as ssh's StrictModes says it."""
    uid = os.geteuid()
    if st.st_uid != uid:
        return f"owned by uid {st.st_uid}, not by you (uid {uid})"
    if st.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _display(path: Path | str) -> str:
    """A path for a message line: control characters shown escaped, never sent to the terminal."""
    return str(path).encode("unicode_escape", "backslashreplace").decode("ascii")


class CacheDir:
    """An open, checked directory of the cache; names are resolved only inside it."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, root: Path, sub: str) -> CacheDir | None:
        """``root/sub``, created 0700 if absent, or None (said in one line) if it cannot be trusted."""
        shown = _display(root)
        try:
            os.makedirs(root.parent, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(root, 0o700)
            root_fd = os.open(root, _DIR_FLAGS)
        except OSError as exc:
            note(f"cache {shown}: {exc.strerror or exc}: running without the cache")
            return None
        try:
            why = unsafe(os.fstat(root_fd))
            if why is not None:
                note(f"cache {shown}: {why}: not used (like ssh, probelint trusts only a cache that is yours "
                     "alone: fix its owner or mode, or remove it)")
                return None
            with contextlib.suppress(FileExistsError):
                os.mkdir(sub, 0o700, dir_fd=root_fd)
            try:
                fd = os.open(sub, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=root_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    note(f"cache {shown}: {sub} is not a directory (a symbolic link?): not followed, cache not used")
                    return None
                raise
            why = unsafe(os.fstat(fd))
            if why is not None:
                os.close(fd)
                note(f"cache {shown}/{sub}: {why}: not used (fix its owner or mode, or remove it)")
                return None
            return cls(fd, root / sub)
        except OSError as exc:
            note(f"cache {shown}: {exc.strerror or exc}: running without the cache")
            return None
        finally:
            os.close(root_fd)

    def shown(self, name: str) -> str:
        return _display(self.path / name)

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def check(self, name: str) -> str | None:
        """None if `name` is absent or a file we may use; else why it is discarded.

        Raises `PermissionError` for a file of another user or writable by others: the caller
        refuses the cache rather than removing what is not its own."""
        st = self.lstat(name)
        if st is None:
            return None
        if not stat.S_ISREG(st.st_mode):
            return "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        why = unsafe(st)
        if why is not None:
            note(f"cache file {self.shown(name)}: {why}: cache not used (fix its owner or mode, or remove it)")
            raise PermissionError(why)
        return "hard-linked elsewhere" if st.st_nlink != 1 else None

    def read(self, name: str, limit: int) -> bytes | mmap.mmap | None:
        """The file's bytes, or None if absent. Raises ValueError (why) for a file to discard,
        PermissionError for one that is not ours. A large file comes mapped, not copied: the
        index is checksummed and unpacked once, and a read() would first copy its megabytes into
        fresh memory (~5 ms warm). Files here are replaced by rename, never truncated in place,
        so the mapped inode stays whole while it is read."""
        why = self.check(name)
        if why is not None:
            raise ValueError(why)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(exc.strerror or str(exc)) from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or unsafe(st) is not None:  # swapped since the check
                raise ValueError("changed while opened")
            if st.st_size > limit:
                raise ValueError(f"{st.st_size} bytes, more than {limit}")
            if st.st_size >= _MAP_FROM:
                return mmap.mmap(fd, st.st_size, mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0),
                                 mmap.PROT_READ)
            return fh.read(limit + 1)

    def create(self, name: str) -> int:
        """A new file `name` (0600, never through a link): its descriptor, open for writing."""
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                       dir_fd=self.fd)

    def write(self, name: str, data: bytes) -> None:
        """Write `data` as `name` through a fresh temporary name and an atomic rename."""
        for _ in range(8):
            tmp = f".tmp-{name}-{os.getpid()}-{os.urandom(6).hex()}"
            try:
                fd = self.create(tmp)
                break
            except FileExistsError:  # a name planted in advance: take another
                continue
        else:
            raise FileExistsError(errno.EEXIST, "no fresh temporary name")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.remove(tmp)
            raise

    def remove(self, name: str) -> None:
        """Unlink `name` in this directory (a link is removed, never its target)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def remove_stale(self, prefix: str, keep: str) -> None:
        """Remove this directory's files named `prefix`... other than those starting with `keep`:
        other versions of probelint's files, and temporary files of killed runs (after an hour)."""
        now = time.time()
        for entry in os.listdir(self.fd):
            if entry.startswith(prefix) and not entry.startswith(keep):
                self.remove(entry)
            elif entry.startswith(f".tmp-{prefix}"):
                st = self.lstat(entry)
                if st is not None and now - st.st_mtime > 3600:
                    self.remove(entry)
