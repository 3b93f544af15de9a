"""bpftrace programs (``.bt``, a bpftrace shebang, or a shell's ``bpftrace -e``): the kprobe attach
points of each probe header, ``kprobe:[MOD:]FN[+OFF]``, ``kretprobe:...``, ``k:``/``kr:``, several
headers before one block, wildcards (expanded later against the kernel's traceable functions)."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator

from probelint.readers.spec import Origin, Parsed, parse_target, with_origin
from probelint.readers.text import Lines, blank

__all__ = ["read"]

# a function name or a pattern; bpftrace reads an attach point's text up to '{', ',' or a space
# (src/parser.cpp parse_attach_point), so a pattern may start with a wildcard (``kprobe:*_read``)
_NAME = r"[A-Za-z_*?\[][\w.*?\[\]]*"
_PROBE = re.compile(rf"(?<![\w$@])(kprobe|kretprobe|kr|k):({_NAME}(?::{_NAME})?(?:\+(?:0[xX][0-9a-fA-F]+|[0-9]+))?)")


# an unclosed comment or string runs to the end (bpftrace refuses the program anyway): each
# unclosed "/*" searched to the end again made blanking quadratic
_NOT_CODE = re.compile(r'/\*.*?(?:\*/|\Z)|//[^\n]*|"(?:\\.|[^"\\])*(?:"|\Z)', re.S)


# the config block (bpftrace docs/language.md "Config Block"): `missing_probes` (also spelt
# MISSING_PROBES, BPFTRACE_MISSING_PROBES) = error (the default: bpftrace fails), warn or ignore
# (it skips a probe that does not exist or cannot be attached)
_CONFIG = re.compile(r"\bconfig\s*=\s*\{[^{}]*\}")
_MISSING_PROBES = re.compile(r"""\b(?:BPFTRACE_)?missing_probes\s*=\s*(["']?)(\w+)\1""", re.I)


def origin(text: str, code: str) -> Origin:
    """How bpftrace treats the probes of this program (`code`: `text` without comments and strings)."""
    block = _CONFIG.search(code)
    setting = _MISSING_PROBES.search(text, block.start(), block.end()) if block else None
    if setting is not None and setting.group(2).lower() in ("warn", "ignore"):
        value = setting.group(2).lower()
        return Origin(tool="bpftrace", optional=f"config missing_probes = {value}")
    return Origin(tool="bpftrace")


def _code_only(text: str) -> str:
    """Comments and string literals blanked out, positions kept."""
    return _NOT_CODE.sub(blank, text)


def read(text: str, file: str, base: int = 0, lines: Lines | None = None) -> Iterator[Parsed]:
    """Probes of a bpftrace program: headers at brace depth 0. A program inside another file
    (``bpftrace -e``) starts at `base` in it, whose `lines` the locations count in."""
    lines = Lines(file, text) if lines is None else lines
    code = _code_only(text)
    tool = origin(text, code)
    headers = _headers(code)
    depth, scanned = 0, 0  # brace depth at `scanned`, advanced from one header to the next
    for m in _PROBE.finditer(code):
        depth += code.count("{", scanned, m.start()) - code.count("}", scanned, m.start())
        scanned = m.start()
        if depth != 0:
            continue
        where = lines.location(base + m.start(2))
        k = bisect_right(headers, (m.start(), len(code) + 1)) - 1
        siblings = headers[k][1] - 1 if k >= 0 and m.start() < headers[k][0] + headers[k][2] else 0
        yield with_origin(parse_target(m.group(2), where, is_return=m.group(1) in ("kretprobe", "kr"),
                                       allow_glob=True), tool._replace(siblings=siblings))


_PREPROCESSOR = re.compile(r"^[ \t]*#[^\n]*", re.M)


def _headers(code: str) -> list[tuple[int, int, int]]:
    """(start, attach points, length) of each probe header: the text before a ``{`` at depth 0,
    from the previous block's end (a preamble's ``#include`` lines and ``;`` statements left out),
    cut at its predicate (``/.../``). One pass over the braces."""
    out: list[tuple[int, int, int]] = []
    depth, start = 0, 0
    for m in re.finditer(r"[{}]", code):
        if m.group() == "{":
            if depth == 0:
                header = _PREPROCESSOR.sub(lambda p: " " * len(p.group()), code[start : m.start()])
                begin = header.rfind(";") + 1
                points = header[begin:].split("/", 1)[0]
                out.append((start + begin, sum(1 for p in points.split(",") if p.strip()), m.start() - start - begin))
            depth += 1
        else:
            depth = max(0, depth - 1)
            if depth == 0:
                start = m.end()
    return out
