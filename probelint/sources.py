"""Probes where users keep them: bpftrace scripts, libbpf BPF C, shell scripts, probe lists.

Each extractor finds the probe points in a file and parses them with the kprobe_events grammar
(`probelint.spec.parse_target`), keeping the file, line and column of the probe token itself:

* bpftrace (``.bt``, or a ``bpftrace`` shebang): ``kprobe:[MOD:]FN[+OFF]``, ``kretprobe:...``,
  ``k:``/``kr:``, several probes before one block, wildcards (expanded later against the kernel);
* libbpf (``.bpf.c``): ``SEC("kprobe/FN+OFF")``, ``SEC("kretprobe/FN")``, ``SEC("kprobe.multi/GLOB")``;
* shell (``.sh``, or a sh/bash shebang): ``echo 'p:... TARGET' >> .../kprobe_events``,
  ``perf probe [-m MOD] [-a] FUNC[+OFF|%return]`` and ``bpftrace -e '...'`` one-liners;
* anything else: a probe list, one probe per line (`probelint.spec.parse_text`).

Not covered yet: perf's source-line forms (``FUNC:RLN``, ``FILE:LINE``, ``FUNC@SRC``) need DWARF
and are reported as not checked; SystemTap scripts.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from pathlib import Path
from typing import TYPE_CHECKING

from probelint.findings import Finding, Location, Severity
from probelint.spec import ParseProblem, ProbeSpec, parse_line, parse_target, parse_text

if TYPE_CHECKING:
    from probelint.engine import ProbeResult
    from probelint.image.kernel import Kernel

__all__ = ["KINDS", "annotate_globs", "detect_kind", "expand_globs", "extract", "tree_files"]

KINDS = ("list", "bpftrace", "libbpf", "shell")
Parsed = ProbeSpec | ParseProblem

_BPFTRACE_PROBE = re.compile(r"(?<![\w$@])(kprobe|kretprobe|kr|k):([A-Za-z_][\w.*?\[\]]*(?::[A-Za-z_*?\[][\w.*?\[\]]*)?"
                             r"(?:\+(?:0[xX][0-9a-fA-F]+|[0-9]+))?)")
_LIBBPF_SEC = re.compile(r'SEC\(\s*"(kprobe|kretprobe|kprobe\.multi|kretprobe\.multi)/([^"]+)"\s*\)')
_KPROBE_EVENTS_ECHO = re.compile(r"""echo\s+(?:-\w+\s+)*(['"])([pr][^'"]*)\1\s*>>?\s*\S*kprobe_events""")
_PERF_PROBE = re.compile(r"\bperf\s+probe\b([^\n;|&]*)")
_BPFTRACE_E = re.compile(r"""\bbpftrace\b[^\n]*?\s-e\s+(['"])(.*?)\1""", re.S)


def detect_kind(path: str, text: str) -> str:
    first = text.split("\n", 1)[0]
    if path.endswith(".bt") or (first.startswith("#!") and "bpftrace" in first):
        return "bpftrace"
    if path.endswith(".bpf.c"):
        return "libbpf"
    if path.endswith((".sh", ".bash")) or (first.startswith("#!") and re.search(r"\b(ba|da|z|k)?sh\b", first)):
        return "shell"
    return "list"


def _location(file: str, text: str, offset: int) -> Location:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Location(file, line, column)


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match.group())


def _code_only(text: str) -> str:
    """Comments and string literals blanked out, positions kept."""
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"', _blank, text, flags=re.S)


def _bpftrace(text: str, file: str, base: int = 0, whole: str | None = None) -> list[Parsed]:
    """Probes of a bpftrace program: headers at brace depth 0."""
    whole = text if whole is None else whole
    code = _code_only(text)
    depth_at, depth = [], 0
    for ch in code:
        depth_at.append(depth)
        depth += (ch == "{") - (ch == "}")
    out: list[Parsed] = []
    for m in _BPFTRACE_PROBE.finditer(code):
        if depth_at[m.start()] != 0:
            continue
        where = _location(file, whole, base + m.start(2))
        out.append(parse_target(m.group(2), where, is_return=m.group(1) in ("kretprobe", "kr"), allow_glob=True))
    return out


def _libbpf(text: str, file: str) -> list[Parsed]:
    out: list[Parsed] = []
    for m in _LIBBPF_SEC.finditer(text):
        where = _location(file, text, m.start(2))
        multi = m.group(1).endswith(".multi")
        out.append(parse_target(m.group(2), where, is_return=m.group(1).startswith("kretprobe"), allow_glob=multi))
    return out


def _perf_probe(args: str, offset: int, text: str, file: str) -> list[Parsed]:
    out: list[Parsed] = []
    module = None
    tokens = list(re.finditer(r"""'[^']*'|"[^"]*"|\S+""", args))
    skip = False
    for i, tok in enumerate(tokens):
        word = tok.group().strip("'\"")
        start = offset + tok.start() + (1 if tok.group()[:1] in "'\"" else 0)
        if skip:
            skip = False
            continue
        if word in ("-m", "--module"):
            module = tokens[i + 1].group().strip("'\"") if i + 1 < len(tokens) else None
            skip = True
            continue
        if word in ("-a", "--add") or word.startswith("-"):
            skip = word in ("-k", "--vmlinux", "-s", "--source", "-x", "--exec")
            continue
        where = _location(file, text, start)
        probe = word.split()[0]
        if re.search(r"[@:;]", probe):
            out.append(ParseProblem(probe, where, "perf source-line probe (FUNC:LINE, FILE:LINE, FUNC@SRC): "
                                               "resolving it needs DWARF, not checked yet", unsupported=True))
            continue
        out.append(parse_target(f"{module}:{probe}" if module else probe, where))
    return out


def _shell(text: str, file: str) -> list[Parsed]:
    found: list[tuple[int, list[Parsed]]] = []
    for m in _KPROBE_EVENTS_ECHO.finditer(text):
        line_no = text.count("\n", 0, m.start(2)) + 1
        column0 = m.start(2) - (text.rfind("\n", 0, m.start(2)) + 1)
        parsed = parse_line(" " * column0 + m.group(2), file, line_no)
        if parsed is not None:
            found.append((m.start(), [parsed]))
    for m in _PERF_PROBE.finditer(text):
        found.append((m.start(), _perf_probe(m.group(1), m.start(1), text, file)))
    for m in _BPFTRACE_E.finditer(text):
        found.append((m.start(), _bpftrace(m.group(2), file, m.start(2), text)))
    return [p for _, group in sorted(found, key=lambda f: f[0]) for p in group]


def extract(path: str, text: str, kind: str | None = None) -> list[Parsed]:
    """The probes of one file, in file order."""
    kind = kind or detect_kind(path, text)
    if kind == "bpftrace":
        return _bpftrace(text, path)
    if kind == "libbpf":
        return _libbpf(text, path)
    if kind == "shell":
        return _shell(text, path)
    return list(parse_text(text, path))


def tree_files(root: Path) -> list[Path]:
    """The files of a tree that hold probes: by extension, or a bpftrace shebang."""
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        name = path.name
        if name.endswith((".bt", ".bpf.c", ".sh", ".bash", ".kprobes")) or name.endswith("probes.txt"):
            out.append(path)
    return out


def expand_globs(kernel: Kernel, parsed: list[Parsed]) -> tuple[list[Parsed], dict[int, tuple[ProbeSpec, int]]]:
    """Replace each wildcard probe by one probe per matching traceable function (what bpftrace and
    kprobe.multi attach to: available_filter_functions). Returns the new list and, for the first
    probe of each expansion, (the wildcard, how many matched)."""
    out: list[Parsed] = []
    groups: dict[int, tuple[ProbeSpec, int]] = {}
    names: list[tuple[str, str | None]] | None = None
    for item in parsed:
        if not isinstance(item, ProbeSpec) or not item.is_glob:
            out.append(item)
            continue
        if names is None:
            names = _traceable_names(kernel)
        pattern = item.symbol or ""
        matches = sorted({n for n, mod in names if fnmatch.fnmatchcase(n, pattern) and item.module in (None, mod)})
        if not matches:
            out.append(ParseProblem(item.text, item.location, f"wildcard {pattern} matches no traceable function"))
            continue
        groups[len(out)] = (item, len(matches))
        out += [dataclasses.replace(item, symbol=name, text=f"{item.text} -> {name}") for name in matches]
    return out, groups


def _traceable_names(kernel: Kernel) -> list[tuple[str, str | None]]:
    """Functions with an ftrace site: what available_filter_functions lists."""
    out = []
    for image in kernel.images:
        for sym in image.symbols.symbols_in(0, 1 << 64):
            if sym.type in "tTwW" and image.ftrace_site_in(sym.address, sym.end) is not None:
                out.append((sym.name, image.name if image.is_module else None))
    return out


def annotate_globs(results: list[ProbeResult], groups: dict[int, tuple[ProbeSpec, int]]) -> None:
    """KP406 on the first probe of each expansion: how many matched, and how many would fail."""
    for start, (glob, count) in groups.items():
        members = results[start : start + count]
        failing = [r.spec.text.rsplit(" -> ", 1)[-1] for r in members if not r.verdict.registers]
        message = f"{glob.text} matches {count} traceable function{'s' if count != 1 else ''}"
        message += f"; {len(failing)} would fail: {', '.join(failing[:8])}" if failing else "; all register"
        members[0].findings.insert(0, Finding("KP406", Severity.INFO, message, glob.location))
