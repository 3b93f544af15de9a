"""KP201: the probe sits exactly on an fentry call site, so the kernel makes it ftrace-based.

kernel/kprobes.c `check_ftrace_location`: `ftrace_location(addr) == addr` -> KPROBE_FLAG_FTRACE
(KPROBES_ON_FTRACE=y). Such a probe skips `arch_prepare_kprobe` (no instruction checks) and is
never jump-optimized; ftrace's own trampoline does the work, which is usually fast enough.
The engine decides it (`ProbeContext.on_ftrace_site`) in the kernel's order; this rule reports it
for probes that go on to register.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    if not ctx.verdict.ftrace:
        return
    yield Hit(
        f"{ctx.where()} is the function's fentry call site: the kernel attaches an ftrace-based probe "
        f"(registers, never jump-optimized)",
    )


RULE = Rule(
    id="KP201",
    name="ftrace-based-probe",
    severity=Severity.INFO,
    stage=Stage.INFO,
    check=check,
    kernel_function="kernel/kprobes.c:check_ftrace_location",
)
