"""``--fix`` / ``--unsafe-fixes`` / ``--diff``: apply the fixes findings carry, as ruff does.

What a fix may do, and what it never does:

* it rewrites one probe token, found at the file, line and column its reader recorded (lines
  counted in ``\\n``, as the readers count them), and only if the token there is still the one
  that was checked;
* removing a duplicate probe (an unsafe fix) takes out the token with its list separator, or a
  probe-list line holding only that probe; never a handler or a BPF program: where the token
  cannot go without breaking the file's syntax (``SEC("kprobe/F")``, the only probe of a
  bpftrace block, a kprobe_events or perf command), nothing is removed;
* the files are fixed in memory and checked again until nothing is left to fix (at most
  `MAX_PASSES` times); ``--diff`` prints the result, ``--fix`` writes each changed file once,
  atomically, with its other bytes (line endings, encoding), mode and owner kept, through its
  symlink; a read-only file, or one changed on disk meanwhile, is refused.

stdin, the Python API's probes and wildcard or source-line expansions are never rewritten.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from probelint.errors import InputError
from probelint.fileio import replacing, rewrite_in_place
from probelint.readers import detect_kind
from probelint.readers.spec import ProbeSpec

if TYPE_CHECKING:
    from probelint.checks import ProbeResult
    from probelint.findings import Fix

__all__ = ["MAX_PASSES", "Edit", "collect", "fix_files", "rewrite"]

MAX_PASSES = 5  # as ruff does: fix, check again, until nothing is left to fix

# what precedes a probe token in bpftrace (the readers' `_BPFTRACE_PROBE`)
_BPFTRACE_PREFIX = re.compile(r"(?<![\w$@])(?:kprobe|kretprobe|kr|k):$")
_LIST_SEPARATOR_BEFORE = re.compile(r",[ \t]*$")
_LIST_SEPARATOR_AFTER = re.compile(r"[ \t]*,[ \t]*")
_TOKEN_CHAR = re.compile(r"[\w.$+%]")  # a character the token would go on with: it is not the one checked

Check = Callable[[dict[str, str]], tuple[bool, str, "list[ProbeResult]"]]


class Edit(NamedTuple):
    line: int  # 1-based, counted in "\n"
    column: int  # 1-based, of the probe token
    old: str  # the probe token as checked
    fix: Fix


def collect(results: list[ProbeResult], *, unsafe: bool) -> dict[str, list[Edit]]:
    """One edit per probe token (the first applicable fix of its findings, safe ones first), by file."""
    edits: dict[str, list[Edit]] = defaultdict(list)
    for result in results:
        spec = result.spec
        if not isinstance(spec, ProbeSpec) or spec.location.file in ("-", "<api>") or " -> " in spec.text:
            continue
        fixes = [f.fix for f in result.findings if f.fix is not None and (f.fix.safe or unsafe)]
        if fixes:
            fixes.sort(key=lambda fix: not fix.safe)
            edits[spec.location.file].append(Edit(spec.location.line, spec.location.column, spec.text, fixes[0]))
    return edits


def _split_lines(text: str) -> list[str]:
    """The lines of `text` with their "\\n" (the last one without): the readers' notion of line,
    not `str.splitlines`, which also breaks at \\f, \\v, \\r, \\x1c-\\x1e, \\x85, \\u2028..."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _removal(line: str, start: int, end: int, kind: str) -> tuple[int, int] | None:
    """The span of `line` that removing the probe token line[start:end] takes out, or None where
    that would break the file's syntax: a probe list's line holding only the probe goes whole;
    a bpftrace probe goes with the comma before it (or, first of its list, the one after)."""
    code = line.rstrip("\r\n")
    if kind == "list":
        head = code[:start].strip()
        alone = (not head or _BPFTRACE_PREFIX.fullmatch(head)) and code[end:].split("#", 1)[0].strip() == ""
        return (0, len(line)) if alone else None
    if kind not in ("bpftrace", "shell"):
        return None  # SEC("kprobe/F"), kernel.function("F"): the program around it needs its probe
    prefix = _BPFTRACE_PREFIX.search(code, 0, start)
    if prefix is None:
        return None  # a kprobe_events or perf probe command in a shell script
    word = prefix.start()
    after = _LIST_SEPARATOR_AFTER.match(code, end)
    if not code[:word].strip() and after is not None and not code[after.end() :].strip():
        return 0, len(line)  # a line of a probe list holding only this probe
    before = _LIST_SEPARATOR_BEFORE.search(code, 0, word)
    if before is not None:
        return before.start(), end
    if after is not None:
        return word, after.end()
    return None  # the only probe before its block


class _File:
    """One probe file being fixed in memory: its lines, and which of them (by original line)
    hold a token already changed by an earlier pass, so that a token changed twice counts once."""

    def __init__(self, text: str, kind: str) -> None:
        self.lines = _split_lines(text)
        self.kind = kind
        self.origin = list(range(len(self.lines)))  # original line of each current line
        self.changed: dict[int, set[int]] = defaultdict(set)  # original line -> columns of changed tokens

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def apply(self, edits: list[Edit]) -> int:
        """Apply the edits whose token is still where it was read; the number of tokens newly changed.
        Edits go from the end of the file backwards, so that earlier lines and columns stay valid."""
        count = 0
        removed: list[int] = []
        for edit in sorted(edits, key=lambda e: (e.line, e.column), reverse=True):
            index, start = edit.line - 1, edit.column - 1
            if not 0 <= index < len(self.lines):
                continue
            line, end = self.lines[index], start + len(edit.old)
            if start < 0 or line[start:end] != edit.old or _TOKEN_CHAR.match(line, end) or (
                    start and _TOKEN_CHAR.match(line, start - 1)):
                continue  # the file no longer says what was checked
            if edit.fix.remove:
                span = _removal(line, start, end, self.kind)
                if span is None:
                    continue
                cut_from, cut_to = span
                replacement = ""
            else:
                cut_from, cut_to, replacement = start, end, edit.fix.replacement
            origin, column = self.origin[index], start + 1
            count += column not in self.changed[origin]
            shift = len(replacement) - (cut_to - cut_from)  # for the changed tokens after it on the line
            after = {c + shift if c > cut_to else c for c in self.changed[origin] - {column}}
            self.changed[origin] = after if edit.fix.remove else after | {column}
            self.lines[index] = line[:cut_from] + replacement + line[cut_to:]
            if not self.lines[index]:
                removed.append(index)
        for index in removed:  # descending
            del self.lines[index]
            del self.origin[index]
        return count


def rewrite(text: str, edits: list[Edit], kind: str) -> tuple[str, int]:
    """`text` with the edits applied (one pass), and how many probe tokens changed."""
    file = _File(text, kind)
    count = file.apply(edits)
    return file.text, count


def fix_files(texts: dict[str, str], check: Check, *, kind: str | None, unsafe: bool,
              diff: bool) -> tuple[bool, str]:
    """The fix loop of one run: check the probe files (`texts`, by path, as read), fix them in
    memory, check again, ... then write each changed file once (or, with `diff`, print the
    changes). `check` parses and checks texts: (any finding at the fail level, the rendered
    report, the results). Returns the exit decision and the output, both for the files as they
    are left: fixed, or untouched with `diff`."""
    files = {path: _File(text, kind or detect_kind(path, text)) for path, text in texts.items()}
    failed, output, results = check(texts)
    as_read = failed
    count = 0
    for _ in range(MAX_PASSES):
        applied = sum(files[path].apply(edits) for path, edits in collect(results, unsafe=unsafe).items()
                      if path in files)
        if not applied:
            break
        count += applied
        failed, output, results = check({path: file.text for path, file in files.items()})
    fixed = {path: file.text for path, file in files.items() if file.text != texts[path]}
    if diff:
        return as_read, "".join(_diff(path, texts[path], after) for path, after in sorted(fixed.items()))
    targets = {path: _writable(path, texts[path]) for path in fixed}
    for path, after in fixed.items():
        _write(path, targets[path], after)
    print(f"probelint: applied {count} fix{'es' if count != 1 else ''}", file=sys.stderr)
    return failed, output


def _diff(path: str, before: str, after: str) -> str:
    name = path.lstrip("/")
    lines = difflib.unified_diff(_split_lines(before), _split_lines(after), f"a/{name}", f"b/{name}")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _writable(path: str, before: str) -> tuple[str, os.stat_result]:
    """The file a rewrite of `path` replaces (a symlink's target) and its status; refused (one
    line, nothing written) if it is read-only or no longer holds what was read."""
    target = os.path.realpath(path)
    try:
        status = os.stat(target)
        with open(target, "rb") as fh:
            now = fh.read()
    except OSError as exc:
        raise InputError(path, f"cannot rewrite: {exc.strerror}") from None
    if not status.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(target, os.W_OK):
        raise InputError(path, "read-only: not rewritten (make it writable to apply the fixes)")
    if now != before.encode("utf-8"):
        raise InputError(path, "changed on disk while probelint ran: not rewritten")
    return target, status


def _write(path: str, found: tuple[str, os.stat_result], text: str) -> None:
    """Replace the file atomically, keeping its mode and owner; on failure it is untouched. A
    file with other hard links is rewritten in place instead (vim's `backupcopy=auto`): a rename
    would leave the other names holding the old text."""
    target, status = found
    if status.st_nlink > 1:
        rewrite_in_place(target, text.encode("utf-8"), status)
        return
    with replacing(target, mode=stat.S_IMODE(status.st_mode), owner=(status.st_uid, status.st_gid),
                   verb="rewrite") as fh:
        fh.write(text.encode("utf-8"))
