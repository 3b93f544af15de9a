"""Shell scripts (``.sh``, ``.bash``, or a shell shebang): the probes their commands add.

* ``echo 'p:... TARGET' >> .../kprobe_events``: a kprobe_events line (`probelint.readers.spec`);
* ``perf probe ...``: the points perf adds (`probelint.readers.perf`);
* ``bpftrace -e '...'``: the one-liner's program (`probelint.readers.bpftrace`).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator

from probelint.findings import Location
from probelint.readers.bpftrace import read as read_bpftrace
from probelint.readers.perf import probe_command
from probelint.readers.spec import Origin, Parsed, parse_line, with_origin
from probelint.readers.text import Lines

__all__ = ["read"]

_KPROBE_EVENTS_ECHO = re.compile(r"""echo\s+(?:-\w+\s+)*(['"])([pr][^'"]*)\1\s*>>?\s*\S*kprobe_events""")
_PERF_PROBE = re.compile(r"""\bperf\s+probe\b((?:'[^'\n]*'|"[^"\n]*"|[^\n;|&'"])*)""")
_BPFTRACE_E = re.compile(r"""\bbpftrace\b[^\n]*?\s-e\s+(['"])(.*?)\1""", re.S)


_ECHO = Origin(tool="kprobe_events")
_PERF = Origin(tool="perf")


def read(text: str, file: str) -> Iterator[Parsed]:
    """The probes of every command, in file order (each kind's commands found in order, merged:
    a cap on the probes read stops the reading, not just the keeping)."""
    lines = Lines(file, text)
    kinds = (_echoes(text, file, lines), _perf_probes(text, lines), _one_liners(text, file, lines))
    return (probe for _, probe in heapq.merge(*kinds, key=lambda found: found[0]))


def _echoes(text: str, file: str, lines: Lines) -> Iterator[tuple[int, Parsed]]:
    for m in _KPROBE_EVENTS_ECHO.finditer(text):
        where = lines.location(m.start(2))
        parsed = parse_line(m.group(2), file, where.line, kprobe_events=True)
        if parsed is not None:  # columns counted in the echoed text, moved to the file's
            moved = Location(file, where.line, parsed.location.column + where.column - 1)
            yield m.start(), parsed._replace(location=moved, origin=_ECHO)


def _perf_probes(text: str, lines: Lines) -> Iterator[tuple[int, Parsed]]:
    for m in _PERF_PROBE.finditer(text):
        for probe in probe_command(m.group(1), m.start(1), lines):
            yield m.start(), with_origin(probe, _PERF)


def _one_liners(text: str, file: str, lines: Lines) -> Iterator[tuple[int, Parsed]]:
    for m in _BPFTRACE_E.finditer(text):
        for probe in read_bpftrace(m.group(2), file, m.start(2), lines):
            yield m.start(), probe
