"""The index file format: data that cannot execute, with a checksum.

A JSON tree of plain types (dicts, lists, str, int, bool, None) whose large arrays are references
into a binary tail of packed machine integers, behind a header with the tree's and the tail's
lengths and a CRC-32 of everything after it. CRC-32 detects corruption (flipped bytes, torn
files), not forgery: an attacker who could write the cache could also fix the checksum, and is
stopped by the ownership and mode checks of image/cachefs.py. `field`, `typed_array` and
`name_list` check the shape of what a reader takes from the tree.
"""

from __future__ import annotations

import json
import struct
import zlib
from array import array
from collections.abc import Iterable
from mmap import mmap
from typing import Any

__all__ = ["IndexFormatError", "decode", "encode", "field", "joined_names", "name_list", "typed_array"]

_MAGIC = b"probelint-index\0"
_HEADER = struct.Struct("<16sIIQ")  # magic, crc32 of what follows, JSON length, blob length
_ARRAY_TYPES = frozenset("BIQqs")  # array typecodes, and "s": UTF-8 text


class IndexFormatError(ValueError):
    """An index whose content does not have the expected shape."""


def field(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """`data[key]`, checked to be a `kind`: a wrong type makes the index rebuilt, never a crash."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise IndexFormatError(f"{key}: not a {kind}")
    return value


def joined_names(names: Iterable[str]) -> str:
    """Names as the index keeps them: one NUL-separated string (a symbol name holds no NUL), which
    decodes far faster than a JSON list of tens of thousands of strings."""
    return "\0".join(names)


def name_list(data: dict[str, Any], key: str) -> list[str]:
    """The names `joined_names` kept under `key`."""
    text = field(data, key, str)
    return text.split("\0") if text else []


def typed_array(data: dict[str, Any], key: str, typecode: str, length: int | None = None) -> memoryview:
    value = field(data, key, memoryview)
    if value.format != typecode or (length is not None and len(value) != length):
        raise IndexFormatError(f"{key}: not an array of {typecode}" + ("" if length is None else f"[{length}]"))
    return value


def encode(tree: Any) -> bytes:
    """`tree` (dicts with str keys, lists, str, int, bool, None, and arrays or typed memoryviews)
    as an index file."""
    blobs: list[bytes] = []
    size = 0

    def packed(value: Any) -> Any:
        nonlocal size
        if isinstance(value, (array, memoryview)) or (isinstance(value, str) and len(value) > 4096):
            # long texts (symbol names) too: JSON would scan them character by character
            raw = value.encode() if isinstance(value, str) else value.tobytes()
            ref = {"$": "s", "at": size, "n": len(raw)} if isinstance(value, str) else \
                {"$": value.typecode if isinstance(value, array) else value.format, "at": size, "n": len(value)}
            blobs.append(raw)
            size += len(raw)
            return ref
        if isinstance(value, dict):
            return {k: packed(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [packed(v) for v in value]
        return value

    head = json.dumps(packed(tree), separators=(",", ":"), ensure_ascii=False).encode()
    rest = _HEADER.pack(_MAGIC, 0, len(head), size)[20:] + head + b"".join(blobs)
    return _HEADER.pack(_MAGIC, zlib.crc32(rest), len(head), size)[:20] + rest


def decode(data: bytes | mmap) -> Any:
    """The tree of an index file (its bytes, or the file mapped); IndexFormatError for anything
    but what `encode` writes. Arrays come back as read-only views of `data` cast to their type
    (copying the mapped megabytes into `array`s cost a warm run ~3 ms); strings are copies."""
    if len(data) < _HEADER.size:
        raise IndexFormatError("shorter than its header")
    magic, crc, head_len, blob_len = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise IndexFormatError("not a probelint index")
    if _HEADER.size + head_len + blob_len != len(data):  # checked before anything is allocated
        raise IndexFormatError(f"declares {head_len} + {blob_len} bytes, holds {len(data) - _HEADER.size}")
    if zlib.crc32(memoryview(data)[20:]) != crc:
        raise IndexFormatError("checksum mismatch")
    blobs = memoryview(data)[_HEADER.size + head_len :]

    def unpacked(ref: dict[str, Any]) -> Any:
        if ref.keys() != {"$", "at", "n"}:
            return ref
        typecode, at, n = ref["$"], ref["at"], ref["n"]
        if typecode not in _ARRAY_TYPES or type(at) is not int or type(n) is not int or at < 0 or n < 0:
            raise IndexFormatError("a malformed array reference")
        itemsize = 1 if typecode == "s" else array(typecode).itemsize
        end = at + n * itemsize
        if end > blob_len:
            raise IndexFormatError("an array beyond the end of the file")
        if typecode == "s":
            return str(blobs[at:end], "utf-8")
        return blobs[at:end].cast(typecode)

    try:
        return json.loads(data[_HEADER.size : _HEADER.size + head_len], object_hook=unpacked)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise IndexFormatError(f"unreadable: {exc}") from None
