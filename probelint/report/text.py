"""Default output: gcc-style ``file:line:col: severity: message [ID]`` lines (editors and CI
problem matchers parse these), context lines indented under each, and a one-line summary."""

from __future__ import annotations

from probelint.engine import ProbeResult
from probelint.findings import Severity

__all__ = ["render"]

_COLOURS = {Severity.ERROR: "\033[1;31m", Severity.WARNING: "\033[1;35m", Severity.INFO: "\033[1;36m"}
_RESET = "\033[0m"


def render(results: list[ProbeResult], *, colour: bool = False, summary: bool = True,
           cpu_profile: str = "qemu64") -> str:
    lines = []
    for result in results:
        for f in result.findings:
            sev = f"{_COLOURS[f.severity]}{f.severity}{_RESET}" if colour else str(f.severity)
            lines.append(f"{f.location}: {sev}: {f.message} [{f.rule}]")
            lines.extend(f"    {note}" for note in f.notes)
    if summary:
        lines.append(f"{_summary(results)} [cpu profile: {cpu_profile}]")
    return "\n".join(lines) + "\n"


def _summary(results: list[ProbeResult]) -> str:
    total = len(results)
    registers = sum(r.verdict.registers for r in results)
    ftrace = sum(r.verdict.ftrace for r in results)
    optimized = sum(r.verdict.optimized for r in results)
    findings = sum(len(r.findings) for r in results)
    return (f"{total} probe{'s' if total != 1 else ''}: {registers} register ({optimized} optimized, "
            f"{ftrace} ftrace-based), {total - registers} refused; {findings} finding{'s' if findings != 1 else ''}")
