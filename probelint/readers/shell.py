"""Shell scripts (``.sh``, ``.bash``, or a shell shebang): the probes their commands add.

* ``echo 'p:... TARGET' >> .../kprobe_events``: a kprobe_events line (`probelint.readers.spec`);
* ``perf probe ...``: the points perf adds (`probelint.readers.perf`);
* ``bpftrace -e '...'``: the one-liner's program (`probelint.readers.bpftrace`).
"""

from __future__ import annotations

import re

from probelint.findings import Location
from probelint.readers.bpftrace import read as read_bpftrace
from probelint.readers.perf import probe_command
from probelint.readers.spec import Parsed, parse_line
from probelint.readers.text import Lines

__all__ = ["read"]

_KPROBE_EVENTS_ECHO = re.compile(r"""echo\s+(?:-\w+\s+)*(['"])([pr][^'"]*)\1\s*>>?\s*\S*kprobe_events""")
_PERF_PROBE = re.compile(r"""\bperf\s+probe\b((?:'[^'\n]*'|"[^"\n]*"|[^\n;|&'"])*)""")
_BPFTRACE_E = re.compile(r"""\bbpftrace\b[^\n]*?\s-e\s+(['"])(.*?)\1""", re.S)


def read(text: str, file: str) -> list[Parsed]:
    """The probes of every command, in file order."""
    found: list[tuple[int, list[Parsed]]] = []
    lines = Lines(file, text)
    for m in _KPROBE_EVENTS_ECHO.finditer(text):
        where = lines.location(m.start(2))
        parsed = parse_line(m.group(2), file, where.line, kprobe_events=True)
        if parsed is not None:  # columns counted in the echoed text, moved to the file's
            moved = Location(file, where.line, parsed.location.column + where.column - 1)
            found.append((m.start(), [parsed._replace(location=moved)]))
    for m in _PERF_PROBE.finditer(text):
        found.append((m.start(), probe_command(m.group(1), m.start(1), lines)))
    for m in _BPFTRACE_E.finditer(text):
        found.append((m.start(), read_bpftrace(m.group(2), file, m.start(2), lines)))
    return [p for _, group in sorted(found, key=lambda f: f[0]) for p in group]
