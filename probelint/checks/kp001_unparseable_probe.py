"""KP001: a line that is no probe in any accepted syntax (kprobe_events, bpftrace, plain).

Parse problems never reach the kernel model; the engine turns each `ParseProblem` into this
finding. `check` is therefore never called for a parsed probe.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    return iter(())


RULE = Rule(
    id="KP001",
    name="unparseable-probe",
    severity=Severity.ERROR,
    stage=Stage.INPUT,
    check=check,
    kernel_function="kernel/trace/trace_kprobe.c:__trace_kprobe_create",
    errno="EINVAL",
)
