"""bpftrace programs (``.bt``, a bpftrace shebang, or a shell's ``bpftrace -e``): the kprobe attach
points of each probe header, ``kprobe:[MOD:]FN[+OFF]``, ``kretprobe:...``, ``k:``/``kr:``, several
headers before one block, wildcards (expanded later against the kernel's traceable functions)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from probelint.readers.spec import Parsed, parse_target
from probelint.readers.text import Lines, blank

__all__ = ["read"]

# a function name or a pattern; bpftrace reads an attach point's text up to '{', ',' or a space
# (src/parser.cpp parse_attach_point), so a pattern may start with a wildcard (``kprobe:*_read``)
_NAME = r"[A-Za-z_*?\[][\w.*?\[\]]*"
_PROBE = re.compile(rf"(?<![\w$@])(kprobe|kretprobe|kr|k):({_NAME}(?::{_NAME})?(?:\+(?:0[xX][0-9a-fA-F]+|[0-9]+))?)")


# an unclosed comment or string runs to the end (bpftrace refuses the program anyway): each
# unclosed "/*" searched to the end again made blanking quadratic
_NOT_CODE = re.compile(r'/\*.*?(?:\*/|\Z)|//[^\n]*|"(?:\\.|[^"\\])*(?:"|\Z)', re.S)


def _code_only(text: str) -> str:
    """Comments and string literals blanked out, positions kept."""
    return _NOT_CODE.sub(blank, text)


def read(text: str, file: str, base: int = 0, lines: Lines | None = None) -> Iterator[Parsed]:
    """Probes of a bpftrace program: headers at brace depth 0. A program inside another file
    (``bpftrace -e``) starts at `base` in it, whose `lines` the locations count in."""
    lines = Lines(file, text) if lines is None else lines
    code = _code_only(text)
    depth, scanned = 0, 0  # brace depth at `scanned`, advanced from one header to the next
    for m in _PROBE.finditer(code):
        depth += code.count("{", scanned, m.start()) - code.count("}", scanned, m.start())
        scanned = m.start()
        if depth != 0:
            continue
        where = lines.location(base + m.start(2))
        yield parse_target(m.group(2), where, is_return=m.group(1) in ("kretprobe", "kr"), allow_glob=True)
