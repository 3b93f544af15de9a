"""Reading and writing the files a user names, safely on shared machines.

Reading: only regular files. A FIFO would block the run forever, a device reads without end: both
are refused by `stat` before they are opened, and opened with ``O_NONBLOCK`` so that a file swapped
for a FIFO in between cannot block either. Every read is capped.

Writing: through a fresh temporary name beside the target (``O_CREAT|O_EXCL|O_NOFOLLOW``, as
`tempfile.mkstemp` opens it), renamed over the target: a link planted at the temporary name or at
the target is replaced, never written through.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from probelint.errors import InputError

__all__ = ["file_kind", "open_regular", "read_regular", "replacing", "rewrite_in_place"]


def file_kind(mode: int) -> str | None:
    """What a file that is not a regular file is ("a FIFO", ...), None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _refuse(where: str, mode: int) -> None:
    kind = file_kind(mode)
    if kind is not None:
        raise InputError(where, f"{kind}, not a regular file: not read")


def open_regular(path: str | Path, *, follow: bool = True, verb: str = "open", inside: str | None = None) -> BinaryIO:
    """`path` opened for reading in binary, if it is a regular file; else one line (InputError,
    "cannot `verb`: ..." if it cannot be opened). `follow=False`: a symbolic link at the last
    component is refused, not followed. `inside`: the file opened must lie in that directory (a
    walked tree), checked on the open file itself, so a directory swapped for a link since the
    walk cannot lead the read out of the tree."""
    where = str(path)
    try:
        _refuse(where, (os.stat(path) if follow else os.lstat(path)).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    except OSError as exc:
        raise InputError(where, f"cannot {verb}: {exc.strerror or exc}") from None
    try:
        _refuse(where, os.fstat(fd).st_mode)  # swapped since the stat
        if inside is not None and not _opened_inside(fd, path, inside):
            raise InputError(where, f"now leads out of {inside} (a link swapped in since the walk): not read")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _opened_inside(fd: int, path: str | Path, directory: str) -> bool:
    """Whether the file open at `fd` lies in `directory` (a real path), by the name the kernel
    gives the open file; where /proc is not mounted, by `path`'s real path."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(path)
    return os.path.commonpath([directory, real]) == directory


def read_regular(path: str | Path, limit: int, what: str, *, follow: bool = True,
                 inside: str | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; a larger one is refused as not `what`."""
    with open_regular(path, follow=follow, verb="read", inside=inside) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise InputError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise InputError(str(path), f"larger than {_size(limit)}: not {what}")
    return data


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(target: str | Path, *, mode: int | None = None, owner: tuple[int, int] | None = None,
              verb: str = "write") -> Iterator[BinaryIO]:
    """A file to write `target`'s new content to; on success it replaces `target` atomically (a
    temporary file beside it, renamed over it) with `mode` (default: a new file's, 0666 less the
    umask) and `owner` (uid, gid). On failure the target is untouched, no temporary file is left,
    and an OSError is one line naming the target ("cannot `verb`")."""
    import tempfile  # only a run that writes pays for it (it imports shutil, bz2 and lzma: ~2 ms)

    target = str(target)
    mode = 0o666 & ~_umask() if mode is None else mode
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target) or ".", prefix=".probelint-")
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fchmod(fd, mode)
            if owner is not None and (os.fstat(fd).st_uid, os.fstat(fd).st_gid) != owner:
                os.fchown(fd, *owner)
            os.fsync(fd)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise InputError(target, f"cannot {verb}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def rewrite_in_place(target: str, data: bytes, status: os.stat_result) -> None:
    """Overwrite the file `target` (the one `status` describes: a link swapped in since is refused)
    with `data`, keeping its inode and so every hard link to it. Not atomic: if the write fails
    the old bytes are put back, and an OSError is one line naming the target."""
    try:
        fd = os.open(target, os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(target, f"cannot rewrite: {exc.strerror or exc}") from None
    with os.fdopen(fd, "r+b") as fh:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (status.st_dev, status.st_ino) or not stat.S_ISREG(now.st_mode):
            raise InputError(target, "replaced while probelint ran: not rewritten")
        old = fh.read()
        try:
            fh.seek(0)
            fh.write(data)
            fh.truncate()
            fh.flush()
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.write(old)
                fh.truncate()
                fh.flush()
            raise InputError(target, f"cannot rewrite: {exc.strerror or exc}") from None
