"""bpftrace programs (``.bt``, a bpftrace shebang, or a shell's ``bpftrace -e``): the kprobe attach
points of each probe header, ``kprobe:[MOD:]FN[+OFF]``, ``kretprobe:...``, ``k:``/``kr:``, several
headers before one block, wildcards (expanded later against the kernel's traceable functions)."""

from __future__ import annotations

import re

from probelint.readers.spec import Parsed, parse_target
from probelint.readers.text import blank, location_at

__all__ = ["read"]

# a function name or a pattern; bpftrace reads an attach point's text up to '{', ',' or a space
# (src/parser.cpp parse_attach_point), so a pattern may start with a wildcard (``kprobe:*_read``)
_NAME = r"[A-Za-z_*?\[][\w.*?\[\]]*"
_PROBE = re.compile(rf"(?<![\w$@])(kprobe|kretprobe|kr|k):({_NAME}(?::{_NAME})?(?:\+(?:0[xX][0-9a-fA-F]+|[0-9]+))?)")


def _code_only(text: str) -> str:
    """Comments and string literals blanked out, positions kept."""
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"', blank, text, flags=re.S)


def read(text: str, file: str, base: int = 0, whole: str | None = None) -> list[Parsed]:
    """Probes of a bpftrace program: headers at brace depth 0. A program inside another file
    (``bpftrace -e``) starts at `base` in `whole`, which the locations count in."""
    whole = text if whole is None else whole
    code = _code_only(text)
    depth_at, depth = [], 0
    for ch in code:
        depth_at.append(depth)
        depth += (ch == "{") - (ch == "}")
    out: list[Parsed] = []
    for m in _PROBE.finditer(code):
        if depth_at[m.start()] != 0:
            continue
        where = location_at(file, whole, base + m.start(2))
        out.append(parse_target(m.group(2), where, is_return=m.group(1) in ("kretprobe", "kr"), allow_glob=True))
    return out
