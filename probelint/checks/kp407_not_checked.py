"""KP407: a probe in a syntax probelint reads but cannot check (perf lazy patterns, module source
lines, source lines without DWARF).

perf's ``FILE:LINE``, ``FUNC:RLN`` and ``FUNC@SRC`` are resolved through DWARF
(`probelint.readers.perf_lines`); what that model does not cover is reported here instead of
guessed, and the probe counts as not checked.
"""

from __future__ import annotations

from probelint.checks import Hit, Rule, Stage
from probelint.findings import Severity
from probelint.readers.spec import ParseProblem


def check_input(problem: ParseProblem) -> Hit | None:
    """The probe is valid where it is used, but probelint does not model how its tool places it:
    its verdict is unknown (neither registered nor refused)."""
    return Hit(f"{problem.message}: {problem.text!r}") if problem.unsupported else None


RULE = Rule("KP407", "not-checked", Severity.WARNING, Stage.INPUT, None, "tools/perf/util/probe-finder.c",
            check_input=check_input, leaves_unchecked=True)
