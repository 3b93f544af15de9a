"""``--fix`` / ``--unsafe-fixes`` / ``--diff``: apply the fixes findings carry, as ruff does.

Every fix rewrites the probe token at its recorded file:line:col (or removes its line); safe
fixes keep what the probe observes, unsafe ones move it and are applied only when asked. Edits
are applied from the end of each line backwards so earlier columns stay valid; stdin and
wildcard expansions are never rewritten.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probelint.readers.spec import ProbeSpec

if TYPE_CHECKING:
    from probelint.checks import ProbeResult
    from probelint.findings import Fix

__all__ = ["Edit", "apply", "collect"]


@dataclass(frozen=True)
class Edit:
    line: int
    column: int
    old: str
    fix: Fix


def collect(results: list[ProbeResult], *, unsafe: bool) -> dict[str, list[Edit]]:
    """One edit per probe token (the first applicable fix of its findings), by file."""
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


def _rewrite(text: str, edits: list[Edit]) -> str:
    lines = text.splitlines(keepends=True)
    removed: set[int] = set()
    for edit in sorted(edits, key=lambda e: (e.line, e.column), reverse=True):
        index = edit.line - 1
        if index >= len(lines):
            continue
        if edit.fix.remove_line:
            removed.add(index)
            continue
        line, start = lines[index], edit.column - 1
        if line[start : start + len(edit.old)] == edit.old:  # the file still says what was checked
            lines[index] = line[:start] + edit.fix.replacement + line[start + len(edit.old) :]
    return "".join(line for i, line in enumerate(lines) if i not in removed)


def apply(edits: dict[str, list[Edit]], *, diff: bool) -> tuple[int, str]:
    """Rewrite the files (atomically), or return a unified diff; (edits applied, diff text)."""
    count, out = 0, []
    for path, file_edits in sorted(edits.items()):
        with open(path, encoding="utf-8") as fh:
            before = fh.read()
        after = _rewrite(before, file_edits)
        if after == before:
            continue
        count += len(file_edits)
        if diff:
            out += difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a/{path.lstrip('/')}", f"b/{path.lstrip('/')}")
            continue
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".probelint-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(after)
        os.replace(tmp, path)
    return count, "".join(out)
