"""libbpf BPF C (``.bpf.c``): ``SEC("kprobe/FN+OFF")``, ``SEC("kretprobe/FN")``,
``SEC("kprobe.multi/GLOB")``."""

from __future__ import annotations

import re
from collections.abc import Iterator

from probelint.readers.spec import Origin, Parsed, parse_target, with_origin
from probelint.readers.text import Lines

__all__ = ["read"]

_SEC = re.compile(r'SEC\(\s*"(kprobe|kretprobe|kprobe\.multi|kretprobe\.multi)/([^"]+)"\s*\)')


_LIBBPF = Origin(tool="libbpf")  # through the perf kprobe PMU (or kprobe.multi): trace_kprobe's tests apply


def read(text: str, file: str) -> Iterator[Parsed]:
    lines = Lines(file, text)
    for m in _SEC.finditer(text):
        where = lines.location(m.start(2))
        multi = m.group(1).endswith(".multi")
        yield with_origin(parse_target(m.group(2), where, is_return=m.group(1).startswith("kretprobe"),
                                       allow_glob=multi), _LIBBPF)
