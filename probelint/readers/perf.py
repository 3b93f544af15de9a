"""perf probe command lines and probe points (tools/perf/builtin-probe.c, util/probe-event.c).

``perf probe [-m MOD] [-a] [EVENT=]FUNC[+OFF|%return]`` adds a kprobe at a symbol; perf's
source-line forms (``FILE:LINE``, ``FUNC:RLN``, ``FUNC@FILE[:RLN|+OFF]``) become a
`SourceLineProbe`, placed later through the kernel's DWARF with perf's model
(`probelint.readers.perf_lines`). Lazy patterns (``FUNC;PTN``) and source lines in modules are
not checked yet.
"""

from __future__ import annotations

import re

from probelint.findings import Location
from probelint.readers.shell_words import ShellWord, Variables, split_words
from probelint.readers.spec import Parsed, ParseProblem, PerfPoint, SourceLineProbe, parse_target
from probelint.readers.text import Lines

__all__ = ["probe_command"]


# builtin-probe.c options that take a value (-x/--exec: user-space probes; -d/-L/-V: other commands)
_PERF_VALUE = {"-a": "add", "--add": "add", "-D": "add", "--definition": "add", "-m": "module",
               "--module": "module", "-x": "exec", "--exec": "exec", "-d": "other", "--del": "other",
               "-L": "other", "--line": "other", "-V": "other", "--vars": "other", "-k": "", "--vmlinux": "",
               "-s": "", "--source": "", "--max-probes": "", "--symfs": "", "--target-ns": "", "--filter": ""}
# commands whose value is optional (only as -lVALUE / --list=VALUE): they add no probe
_PERF_OTHER = {"-l", "--list", "-F", "--funcs"}


def probe_command(args: str, offset: int, lines: Lines, variables: Variables | None = None) -> list[Parsed]:
    """The probes one `perf probe` command adds, parsed as builtin-probe.c does: each -a/-D value
    is a probe, and the words after the last option (PARSE_OPT_STOP_AT_NON_OPTION) are one more,
    joined (`parse_probe_event_argv`): its first word is the point, the rest are fetchargs.
    `variables`: the script's, for the ``$NAME`` in the words (`probelint.readers.shell_words`)."""
    words = split_words(args, offset, variables)
    specs: list[tuple[str, int, ShellWord | None]] = []
    module: str | None = None
    module_word: ShellWord | None = None
    other = False
    i = 0
    while i < len(words):
        shell_word = words[i]
        word, where = shell_word.text, shell_word.where
        if not word.startswith("-") or word == "-":
            specs.append((word, where[0] if where else offset, shell_word))  # the rest is this probe's fetchargs
            break
        name, eq, value = word.partition("=")
        attached = eq != "" or (not word.startswith("--") and len(word) > 2)
        if not eq and attached:
            name, value = word[:2], word[2:]
        start = where[len(name) + len(eq)] if attached and value else None
        kind = _PERF_VALUE.get(name)
        if kind is not None and not attached:
            i += 1
            shell_word = words[i] if i < len(words) else ShellWord("", [], "")
            value, vwhere = shell_word.text, shell_word.where
            start = vwhere[0] if vwhere else None
        if kind == "add" and (value or shell_word.unknown):
            specs.append((value, start if start is not None else offset, shell_word))
        elif kind == "module":
            module, module_word = value, shell_word
        elif kind in ("exec", "other") or name in _PERF_OTHER:
            other = True
        i += 1
    if other:  # another command, or user-space probes: nothing for the kernel to register
        return []
    return [_expanded(spec, start, word, module, module_word, lines) for spec, start, word in specs
            if spec.split() or (word is not None and word.unknown)]


def _expanded(spec: str, start: int, word: ShellWord | None, module: str | None, module_word: ShellWord | None,
              lines: Lines) -> Parsed:
    """One probe of the command: not checked where a variable in it (or in its -m) has no value
    the script gives; else the point, marked as expanded (its text is not the file's: no fix)."""
    for part in (word, module_word):
        if part is not None and part.unknown is not None:
            at, why = part.unknown
            return ParseProblem(part.raw, lines.location(at), f"perf probe point not checked: {why}", unsupported=True)
    point = _point(spec.split()[0], lines.location(start), module)
    if any(part is not None and part.expanded for part in (word, module_word)) and not isinstance(point, ParseProblem):
        return point._replace(text=f"{word.raw if word else spec} -> {point.text}")
    return point


def _point(probe: str, where: Location, module: str | None) -> Parsed:
    """One `perf probe` point (tools/perf/util/probe-event.c `parse_perf_probe_point`):
    ``[[GRP:]EVENT=]FUNC[@SRC][+OFF|%return|:RLN|;PTN]`` or ``[[GRP:]EVENT=]SRC[:ALN|;PTN]``."""
    head = re.match(r"[^;@+%=]*=", probe)
    body = probe[head.end() :] if head else probe
    # a file spec: none of "+@%", and a '.' before the first ':' or ';'
    cut = re.search(r"[;:]", body)
    file_spec = not re.search(r"[+@%]", body) and cut is not None and "." in body[: cut.start()]
    if ";" in body:
        return ParseProblem(probe, where, "perf lazy-pattern probe (;PTN) is not checked yet", unsupported=True)
    parts = re.split(r"([:+@%])", body)
    name, fields = parts[0], dict(zip(parts[1::2], parts[2::2], strict=True))
    if not re.search(r"[:@]", body):
        return parse_target(f"{module}:{body}" if module else body, where)
    if "%" in fields:  # perf finds return probes through the symbol table, without DWARF
        if ":" in fields or "+" in fields or file_spec:
            return ParseProblem(probe, where, "perf: %return takes a function name alone")
        return parse_target(f"{module}:{name}%{fields['%']}" if module else f"{name}%{fields['%']}", where)
    if module:
        return ParseProblem(probe, where, "perf source-line probe in a module: not checked yet", unsupported=True)
    try:
        line = int(fields[":"], 0) if ":" in fields else 0
        offset = int(fields["+"], 0) if "+" in fields else 0
    except ValueError:
        return ParseProblem(probe, where, "perf: line number and offset must be numbers")
    if file_spec:
        point = PerfPoint(None, name, line)
    elif not name or ("@" in fields and not fields["@"]):
        return ParseProblem(probe, where, "perf: no function or file name")
    else:
        point = PerfPoint(name, fields.get("@"), line, offset)
    return SourceLineProbe(probe, where, point)
