"""Shell scripts (``.sh``, ``.bash``, or a shell shebang): the probes their commands add.

* ``echo 'p:... TARGET' >> .../kprobe_events``: a kprobe_events line (`probelint.readers.spec`);
* ``perf probe ...``: the points perf adds (`probelint.readers.perf`);
* ``bpftrace -e '...'``: the one-liner's program (`probelint.readers.bpftrace`).

Definitions held in variables (``P="p:grp/ev vfs_read"; echo "$P" >> kprobe_events``,
``perf probe -a "$FN+4"``) are expanded where the script assigns the variable one literal before
the use (`probelint.readers.shell_words`), the probe located at the variable's ``$``; elsewhere
the probe is not checked (KP407), naming the variable and why. Commands in comments are not
read (`shell_words.uncommented`).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator

from probelint.readers.bpftrace import read as read_bpftrace
from probelint.readers.perf import probe_command
from probelint.readers.shell_words import Variables, split_words, uncommented
from probelint.readers.spec import Origin, Parsed, ParseProblem, parse_line, with_origin
from probelint.readers.text import Lines

__all__ = ["read"]

# echo [-n|-e...] WORD... >> .../kprobe_events (the words: quoted, or bare up to a redirection)
_KPROBE_EVENTS_ECHO = re.compile(r"""\becho((?:[ \t]+-\w+)*)"""
                                 r"""((?:[ \t]+(?:'[^'\n]*'|"(?:\\.|[^"\\\n])*"|[^\s'";&|<>])+)+)"""
                                 r"""[ \t]*>>?[ \t]*\S*kprobe_events""")
_PERF_PROBE = re.compile(r"""\bperf\s+probe\b((?:'[^'\n]*'|"[^"\n]*"|[^\n;|&'"])*)""")
_BPFTRACE_E = re.compile(r"""\bbpftrace\b[^\n]*?\s-e\s+(['"])(.*?)\1""", re.S)


_ECHO = Origin(tool="kprobe_events")
_PERF = Origin(tool="perf")


def read(text: str, file: str) -> Iterator[Parsed]:
    """The probes of every command, in file order (each kind's commands found in order, merged:
    a cap on the probes read stops the reading, not just the keeping)."""
    lines = Lines(file, text)
    code = uncommented(text)  # same offsets: locations are still the file's
    variables = Variables(code, lines)
    kinds = (_echoes(code, file, lines, variables), _perf_probes(code, lines, variables),
             _one_liners(code, file, lines))
    return (probe for _, probe in heapq.merge(*kinds, key=lambda found: found[0]))


def _echoes(text: str, file: str, lines: Lines, variables: Variables) -> Iterator[tuple[int, Parsed]]:
    for m in _KPROBE_EVENTS_ECHO.finditer(text):
        words = split_words(m.group(2), m.start(2), variables)
        unknown = next((w for w in words if w.unknown is not None), None)
        if unknown is not None and unknown.unknown is not None:
            at, why = unknown.unknown
            yield m.start(), ParseProblem(unknown.raw, lines.location(at),
                                          f"kprobe_events definition not checked: {why}", unsupported=True,
                                          origin=_ECHO)
            continue
        line = " ".join(w.text for w in words)
        if not words or not line.startswith(("p", "r")):  # `echo > kprobe_events` clears; `-:EV` deletes
            continue
        offsets = [o for w in words for o in [*w.where, w.where[-1] + 1 if w.where else m.start(2)]]
        parsed = parse_line(line, file, 1, kprobe_events=True)
        if parsed is None:
            continue
        # columns counted in the echoed words, moved to the file's (an expanded variable's: its `$`)
        index = parsed.location.column - 1
        moved = lines.location(offsets[min(index, len(offsets) - 1)])
        parsed = parsed._replace(location=moved, origin=_ECHO)
        if any(w.expanded for w in words) and not isinstance(parsed, ParseProblem):
            parsed = parsed._replace(text=f"{m.group(2).strip()} -> {parsed.text}")  # not the file's text: no fix
        yield m.start(), parsed


def _perf_probes(text: str, lines: Lines, variables: Variables) -> Iterator[tuple[int, Parsed]]:
    for m in _PERF_PROBE.finditer(text):
        for probe in probe_command(m.group(1), m.start(1), lines, variables):
            yield m.start(), with_origin(probe, _PERF)


def _one_liners(text: str, file: str, lines: Lines) -> Iterator[tuple[int, Parsed]]:
    for m in _BPFTRACE_E.finditer(text):
        for probe in read_bpftrace(m.group(2), file, m.start(2), lines):
            yield m.start(), probe
