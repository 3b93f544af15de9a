"""The vmlinux inside a bzImage (/boot/vmlinuz-*), as the boot loader and scripts/extract-vmlinux
find it.

arch/x86/boot/header.S: the real-mode setup is `setup_sects` + 1 sectors of 512 bytes (0 means
4), the setup header carries "HdrS" at 0x202, and from boot protocol 2.08 `payload_offset` (0x248,
from the start of the protected-mode code) and `payload_length` (0x24c) bound the compressed
vmlinux. Decompressed, it is the vmlinux stripped of symbols and debug information
(arch/x86/boot/compressed/Makefile: `objcopy -R .comment -S`), relocations appended; every
allocated section, the special tables and the build-id note are there.

Decompressing takes seconds (lz4 0.3 s, xz or zstd ~1 s); the result is kept in the cache under
the SHA-256 of the bzImage, so a warm run maps it as it maps a vmlinux. A cached file is no more
trusted than any image given on the command line (image/elf.py checks every offset); its CRC-32,
kept in its last 4 bytes, is checked on each use so that a damaged file is rebuilt, not read.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import zlib
from pathlib import Path

from probelint.errors import InputError
from probelint.image.cachefs import CacheDir, note
from probelint.image.compressed import decompress, kind_of

__all__ = ["is_bzimage", "vmlinux_of"]

_HDRS = 0x202
_PROTOCOL_PAYLOAD = 0x208  # the boot protocol that added payload_offset/payload_length
_SUB = "vmlinuz"


def is_bzimage(head: bytes) -> bool:
    """The x86 boot sector's signature and the setup header's "HdrS" (the first 0x210 bytes)."""
    return len(head) >= 0x210 and head[0x1FE:0x200] == b"\x55\xaa" and head[_HDRS : _HDRS + 4] == b"HdrS"


def payload(path: str, data: bytes) -> tuple[str, memoryview]:
    """(compression format, compressed bytes) of the bzImage `data`."""
    version = struct.unpack_from("<H", data, _HDRS + 4)[0]
    if version < _PROTOCOL_PAYLOAD:
        raise InputError(path, f"bzImage of boot protocol {version >> 8}.{version & 0xff:02d}, older than 2.08: "
                               "no payload header (decompress it with scripts/extract-vmlinux)")
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if length == 0 or start + length > len(data):
        raise InputError(path, "bzImage payload outside the file (truncated?)")
    compressed = memoryview(data)[start : start + length]
    kind = kind_of(bytes(compressed[:8]))
    if kind is None:
        raise InputError(path, f"bzImage payload in an unknown format (starts {bytes(compressed[:4]).hex()})")
    return kind, compressed


def vmlinux_of(path: str, data: bytes, cache_root: Path | None) -> bytes | mmap.mmap:
    """The vmlinux ELF inside the bzImage `data` (read from `path`): from the cache when there."""
    directory = CacheDir.open(cache_root, _SUB) if cache_root is not None else None
    import hashlib  # a bzImage's key: kept off the start-up of a vmlinux run

    name = hashlib.sha256(data).hexdigest() + ".elf"
    if directory is not None:
        cached = _cached(directory, name)
        if cached is not None:
            return cached
    kind, compressed = payload(path, data)
    elf = decompress(path, (compressed[k : k + (1 << 20)].tobytes() for k in range(0, len(compressed), 1 << 20)),
                     kind)
    if elf[:4] != b"\x7fELF":
        raise InputError(path, f"the bzImage payload ({kind}) is not an ELF file")
    if directory is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            directory.write(name, elf + zlib.crc32(elf).to_bytes(4, "little"))
    return elf


def _cached(directory: CacheDir, name: str) -> mmap.mmap | None:
    try:
        why = directory.check(name)
        if why is None:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory.fd)
            try:
                size = os.fstat(fd).st_size
                if size <= 4:
                    why = "empty"
                else:
                    mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                    if zlib.crc32(memoryview(mapped)[:-4]) == int.from_bytes(mapped[-4:], "little"):
                        return mapped
                    mapped.close()
                    why = "checksum mismatch"
            finally:
                os.close(fd)
    except FileNotFoundError:
        return None
    except PermissionError:
        return None  # another user's file: refused (said once), never removed
    except OSError as exc:
        why = exc.strerror or str(exc)
    if why is not None:
        note(f"cache file {directory.shown(name)}: {why}: discarded, rebuilt")
        with contextlib.suppress(OSError):
            directory.remove(name)
    return None
