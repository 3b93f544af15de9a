"""KP402: ``MOD:SYM`` names a module that is not among the images being checked.

kprobe_events accepts such a probe and keeps it pending until the module loads
(kernel/trace/trace_kprobe.c `register_trace_kprobe`: -ENOENT on a module probe is deferred),
so nothing can be checked until the module's .ko is given as well.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    module = ctx.spec.module
    if module is not None and ctx.kernel.module(module) is None and module not in ctx.kernel.unloaded:
        yield Hit(
            f"module {module} is not among the images checked: the kernel defers this probe until "
            f"{module} loads, so it was not checked",
            (f"add {module}.ko to the command line to check it",),
        )


RULE = Rule(
    id="KP402",
    name="module-not-given",
    severity=Severity.WARNING,
    stage=Stage.FRONTEND,
    check=check,
    kernel_function="kernel/trace/trace_kprobe.c:register_trace_kprobe",
    leaves_unchecked=True,
)
