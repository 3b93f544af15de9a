"""KP117: a probe on an fentry site of a kernel built without KPROBES_ON_FTRACE.

kernel/kprobes.c `check_ftrace_location`: `ftrace_location(addr) == addr` and
!CONFIG_KPROBES_ON_FTRACE -> -EINVAL (with it, the probe becomes ftrace-based: KP201).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    if ctx.on_ftrace_site and ctx.kernel.disabled("KPROBES_ON_FTRACE"):
        yield Hit(f"{ctx.where()} is an fentry call site and the kernel is built without KPROBES_ON_FTRACE: "
                  f"it refuses kprobes there")


RULE = Rule("KP117", "ftrace-site-without-kprobes-on-ftrace", Severity.ERROR, Stage.ADDRESS, check,
            "kernel/kprobes.c:check_ftrace_location", "EINVAL")
