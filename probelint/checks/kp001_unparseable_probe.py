"""KP001: a line that is no probe in any accepted syntax (kprobe_events, bpftrace, plain), or a
probe its own tool refuses before the kernel sees it (SystemTap's blocklist, a wildcard matching
nothing).

The readers turn such a line into a `ParseProblem` saying what is wrong; this rule reports it, and
the kernel (or the tool) refuses it: kprobe_events returns -EINVAL for a line it cannot parse.
"""

from __future__ import annotations

from probelint.checks import Hit, Rule, Stage
from probelint.findings import Severity
from probelint.readers.spec import ParseProblem


def check_input(problem: ParseProblem) -> Hit | None:
    return None if problem.unsupported else Hit(f"{problem.message}: {problem.text!r}")


RULE = Rule(
    id="KP001",
    name="unparseable-probe",
    severity=Severity.ERROR,
    stage=Stage.INPUT,
    check=None,
    kernel_function="kernel/trace/trace_kprobe.c:__trace_kprobe_create",
    errno="EINVAL",
    check_input=check_input,
)
