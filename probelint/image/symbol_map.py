"""A vmlinux's symbols from a text map instead of its .symtab: a System.map (scripts/mksysmap:
`nm -n` less a few types and names) or a kallsyms dump (/proc/kallsyms of the running kernel).

Both are lines ``ADDRESS TYPE NAME`` (a dump adds ``\\t[MODULE]`` for module symbols, which are
skipped: modules are images of their own). A dump's addresses carry the KASLR slide: it is worked
out from ``_text`` (``_stext`` if absent), which the x86 linker script puts at the start of
``.text``, and taken off every address but the per-CPU ones (scripts/kallsyms.c
make_percpu_absolute: type ``A``, never relocated). The map is checked against the image: its
``linux_banner`` must hold the image's banner, or the map is another kernel's.

kallsyms is then built from these entries exactly as from a .symtab (image/kallsyms.py): the
sizing and ordering rules are the same code.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

from probelint.errors import InputError
from probelint.fileio import read_regular

__all__ = ["SymbolMap", "beside", "is_symbol_map", "is_symbol_map_file"]

MAX_MAP = 256 << 20  # a System.map is ~5 MiB, /proc/kallsyms ~15 MiB with modules
_LINE = re.compile(rb"([0-9a-fA-F]{8,16}) ([A-Za-z?]) (\S+)(?:\t\[\S+\])?")
_KERNEL_SPACE = 0xFFFF800000000000  # below it: per-CPU offsets, not addresses
# Debian ships this one line as /boot/System.map-*: the real map is in the -dbg package
_PLACEHOLDER = b"The real System.map is in the"


def is_symbol_map(head: bytes) -> bool:
    """The first line of `head` looks like a System.map or /proc/kallsyms line."""
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    return _LINE.fullmatch(first) is not None


def is_symbol_map_file(path: str | Path) -> bool:
    """Is `path` a System.map or kallsyms dump (by its first line)? Only regular files are read."""
    from probelint.fileio import open_regular

    with open_regular(path) as fh:
        return is_symbol_map(fh.read(256))


def beside(image: str) -> list[Path]:
    """Where a System.map of the image at `image` is installed: /boot/System.map-R beside
    /boot/vmlinuz-R, System.map beside usr/lib/modules/R/vmlinuz, the -dbg package's copy."""
    path = Path(image)
    out = []
    for prefix in ("vmlinuz-", "vmlinux-"):
        if path.name.startswith(prefix):
            release = path.name[len(prefix):]
            out += [path.parent / f"System.map-{release}", Path(f"/usr/lib/debug/boot/System.map-{release}")]
    if path.name in ("vmlinuz", "vmlinux"):
        out.append(path.parent / "System.map")
    return [p for p in out if p.is_file()]


class SymbolMap:
    """The symbols of a map file; parsed when first needed (a warm run uses only its digest)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._data = read_regular(path, MAX_MAP, "a System.map or kallsyms dump")
        if _PLACEHOLDER in self._data[:200]:
            raise InputError(self.path, "Debian's placeholder, not a System.map: the real one is in the "
                                        "linux-image-VERSION-dbg package (/usr/lib/debug/boot/System.map-VERSION); "
                                        "or give a kallsyms dump (sudo cat /proc/kallsyms > kallsyms.txt)")

    @cached_property
    def digest(self) -> str:
        """Part of the index key: the same image indexed with another map is another index."""
        import hashlib  # only a map's own index key: kept off the start-up of a vmlinux run

        return hashlib.sha256(self._data).hexdigest()[:16]

    @cached_property
    def _lines(self) -> list[tuple[int, str, str]]:
        out = []
        for number, line in enumerate(self._data.splitlines(), 1):
            if not line.strip():
                continue
            match = _LINE.fullmatch(line.rstrip(b"\r"))
            if match is None:
                raise InputError(f"{self.path}:{number}", "not a System.map or /proc/kallsyms line")
            if b"\t[" in line:
                continue  # a module's symbol
            out.append((int(match[1], 16), match[3].decode("utf-8", "replace"), match[2].decode()))
        if not out:
            raise InputError(self.path, "no kernel symbol in it")
        if not any(address for address, _, _ in out):
            raise InputError(self.path, "every address is 0: kptr_restrict hid them from a user without "
                                        "CAP_SYSLOG; dump /proc/kallsyms as root")
        return out

    def slide(self, text_start: int) -> int:
        """The KASLR slide of the addresses (0 for a System.map): where ``_text`` (or ``_stext``)
        is in the map, less where the image's .text starts."""
        lines = self._lines
        anchor = next((a for a, n, _ in lines if n == "_text"), None) or \
            next((a for a, n, _ in lines if n == "_stext"), None)
        if anchor is None:
            raise InputError(self.path, "no _text or _stext symbol: not a vmlinux symbol map")
        return anchor - text_start

    def entries(self, text_start: int) -> list[tuple[int, str, str]]:
        """(link-time address, name, nm type) of every vmlinux symbol, in the map's order; the
        image's .text starts at `text_start`."""
        lines = self._lines
        slide = self.slide(text_start)
        # a dump gives per-CPU symbols as absolute (``__per_cpu_start`` too): offsets, never slid,
        # and data to the kallsyms rules (a System.map's own A symbols are absolute and stay so)
        percpu = any(n == "__per_cpu_start" and t == "A" for _, n, t in lines)
        return [(a, n, "D") if percpu and t == "A" and a < _KERNEL_SPACE else
                (a - slide if a >= _KERNEL_SPACE else a, n, t) for a, n, t in lines]
