"""Decompressing what the kernel build compresses: modules (``.ko.xz``, ``.ko.gz``, ``.ko.zst``) and
a bzImage's payload (every format scripts/extract-vmlinux tries).

gzip, xz, lzma and bzip2 are the standard library's. zstd and lz4 come from their maintained
bindings (zstandard, lz4): Debian's cloud kernels are lz4 (6.1) and zstd (6.12). LZO has no
maintained binding: such a payload is refused with what to do instead. Every output is bounded, so
that a bomb cannot exhaust memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from probelint.errors import InputError

__all__ = ["MAX_DECOMPRESSED", "decompress", "kind_of"]

# Output caps: a distribution's largest module (amdgpu.ko) is ~50 MB, a decompressed vmlinux
# ~60 MB (debug copies are not compressed). Output is produced a step at a time, so a bomb stops
# near the cap: one call on a whole input chunk would expand 1 MiB of xz zeros to GiBs.
MAX_DECOMPRESSED = 512 << 20
_STEP = 1 << 20
_ZSTD_FEED = 1 << 10  # zstd's decompressobj has no output bound: its input is fed in small pieces

# the magic numbers scripts/extract-vmlinux searches for, in its order
_MAGIC = (
    (b"\x1f\x8b\x08", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"), (b"\x5d\x00\x00", "lzma"),
    (b"\x89LZO", "lzo"), (b"\x02\x21\x4c\x18", "lz4"), (b"\x28\xb5\x2f\xfd", "zstd"),
)
_LZ4_LEGACY_MAGIC = 0x184C2102
_LZ4_LEGACY_CHUNK = 8 << 20  # lib/decompress_unlz4.c LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE


def kind_of(data: bytes) -> str | None:
    """The compression format `data` starts with, or None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return None


def decompress(where: str, chunks: Iterator[bytes], kind: str, what: str = "a kernel image",
               limit: int = MAX_DECOMPRESSED) -> bytes:
    """The bytes `chunks` decompress to under `kind`, at most `limit` of them; data after the end
    of the stream (the 4-byte size the kernel build appends to its payload) is ignored."""
    if kind == "lz4":
        return _unlz4_legacy(where, b"".join(chunks), what, limit)
    import lzma  # imported when something is decompressed: every run reads this module's magics

    decomp = _decompressor(where, kind)
    out = bytearray()
    try:
        for chunk in chunks:
            for piece in _pieces(decomp, kind, chunk):
                out += piece
                if len(out) > limit:
                    raise InputError(where, f"decompresses to more than {limit >> 20} MiB: not {what}")
            if decomp.eof:
                break
        if not decomp.eof:
            raise InputError(where, f"cannot decompress ({kind}): the stream ends early (truncated?)")
    except (lzma.LZMAError, zlib.error, OSError, ValueError, EOFError) as exc:
        raise InputError(where, f"cannot decompress ({kind}): {exc}") from None
    except Exception as exc:  # the bindings' own error types (zstandard.ZstdError)
        if type(exc).__module__.split(".")[0] in ("zstandard", "lz4"):
            raise InputError(where, f"cannot decompress ({kind}): {exc}") from None
        raise
    return bytes(out)


def _pieces(decomp: Any, kind: str, data: bytes) -> Iterator[bytes]:
    """The output of feeding `data`, at most about `_STEP` bytes at a time."""
    if kind == "zstd":
        for start in range(0, len(data), _ZSTD_FEED):
            yield decomp.decompress(data[start : start + _ZSTD_FEED])
            if decomp.eof:
                return
    elif kind == "gzip":  # zlib keeps what it has not consumed in unconsumed_tail
        while data and not decomp.eof:
            yield decomp.decompress(data, _STEP)
            data = decomp.unconsumed_tail
    else:  # lzma, bz2: buffered inside; fed nothing until they need input again
        yield decomp.decompress(data, max_length=_STEP)
        while not decomp.eof and not decomp.needs_input:
            yield decomp.decompress(b"", max_length=_STEP)


def _decompressor(where: str, kind: str) -> Any:
    import bz2
    import lzma

    if kind == "xz":
        return lzma.LZMADecompressor(lzma.FORMAT_XZ)
    if kind == "lzma":
        return lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    if kind == "gzip":
        return zlib.decompressobj(wbits=31)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise InputError(where, "zstd-compressed: pip install zstandard (or decompress it first)") from None
        return zstandard.ZstdDecompressor().decompressobj()
    raise InputError(where, f"{kind}-compressed, which probelint cannot decompress (no maintained Python "
                            f"binding): decompress it first (the kernel's scripts/extract-vmlinux)")


def _unlz4_legacy(where: str, data: bytes, what: str, limit: int) -> bytes:
    """lib/decompress_unlz4.c: the legacy lz4 format (`lz4 -l`): a magic, then blocks each
    preceded by its compressed size and holding at most 8 MiB; the magic may recur."""
    try:
        import lz4.block
    except ImportError:
        raise InputError(where, "lz4-compressed: pip install lz4 (or decompress it first)") from None
    out = bytearray()
    pos = 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
        if size == _LZ4_LEGACY_MAGIC:
            continue
        if size == 0 or pos + size > len(data):
            break  # the appended image size, or the end
        try:
            out += lz4.block.decompress(data[pos : pos + size], uncompressed_size=_LZ4_LEGACY_CHUNK)
        except lz4.block.LZ4BlockError as exc:
            raise InputError(where, f"cannot decompress (lz4): {exc}") from None
        pos += size
        if len(out) > limit:
            raise InputError(where, f"decompresses to more than {limit >> 20} MiB: not {what}")
    if not out:
        raise InputError(where, "cannot decompress (lz4): no block")
    return bytes(out)
