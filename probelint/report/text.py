"""Default output: gcc-style ``file:line:col: severity: message [ID]`` lines (editors and CI
problem matchers parse these), context lines indented under each, and a one-line summary."""

from __future__ import annotations

from collections import Counter

from probelint.errors import printable
from probelint.findings import Severity
from probelint.pipeline import Report
from probelint.readers.spec import KPROBE_EVENTS

__all__ = ["render"]

_COLOURS = {Severity.ERROR: "\033[1;31m", Severity.WARNING: "\033[1;35m", Severity.INFO: "\033[1;36m"}
_RESET = "\033[0m"


def render(report: Report, *, colour: bool = False, summary: bool = True) -> str:
    lines = []
    shows = report.config.shows
    if report.unvalidated:
        where = report.kernel.images[0].path if report.kernel.images else "kernel"
        sev = f"{_COLOURS[Severity.WARNING]}warning{_RESET}" if colour else "warning"
        lines.append(f"{printable(str(where))}: {sev}: {printable(report.unvalidated)} [unvalidated-kernel]")
    for result in report:
        for f in result.findings:
            if not shows(f.severity, f.rule):
                continue
            sev = f"{_COLOURS[f.severity]}{f.severity}{_RESET}" if colour else str(f.severity)
            # file names and probe text are the user's: never raw control characters on a terminal
            lines.append(f"{printable(str(f.location))}: {sev}: {printable(f.message)} [{f.rule}]")
            lines.extend(f"    {printable(note)}" for note in f.notes)
    if summary:
        lines.append(f"{_summary(report)} [cpu profile: {report.cpu_profile}; {_paths(report)}]")
    return "\n".join(lines) + "\n"


def _summary(report: Report) -> str:
    c = report.counts()
    unchecked = f", {c.unchecked} not checked" if c.unchecked else ""
    unchecked += f", {c.unused} not used by {'its' if c.unused == 1 else 'their'} tool" if c.unused else ""
    optimization = f", {c.optimization_unchecked} optimization not checked" if c.optimization_unchecked else ""
    return (f"{c.probes} probe{'s' if c.probes != 1 else ''}: {c.registers} register ({c.optimized} optimized, "
            f"{c.ftrace} ftrace-based{optimization}), {c.refused} refused{unchecked}; "
            f"{c.findings} finding{'s' if c.findings != 1 else ''}{_folded(report)}")


def _folded(report: Report) -> str:
    """The info findings not listed, by rule (ruff's way with informational rules)."""
    shows = report.config.shows
    folded = Counter(f.rule for r in report for f in r.findings if not shows(f.severity, f.rule))
    if not folded:
        return ""
    rules = ", ".join(f"{n} {rule}" for rule, n in sorted(folded.items()))
    return f" ({sum(folded.values())} info not shown: {rules}; --show-info lists them)"


def _paths(report: Report) -> str:
    """The registration path the verdicts assume (kprobe_events front end, or register_kprobe() alone)."""
    paths = Counter(r.spec.origin.path for r in report)
    if len(paths) <= 1:
        return f"via {next(iter(paths), KPROBE_EVENTS)}"
    return "via " + ", ".join(f"{path} {n}" for path, n in sorted(paths.items()))
