"""KP413: ``MOD:SYM`` names a module known not to be loaded: the probe is held pending.

kernel/trace/trace_kprobe.c `register_trace_kprobe`: register_kprobe() answers -ENOENT for a
symbol of a module that is not loaded, and `trace_kprobe_module_exist` false turns that into
success ("This probe might be able to register after target module is loaded"). The write is
accepted, nothing is in kprobes/list, and `trace_kprobe_module_callback` registers the probe when
the module arrives (MODULE_STATE_COMING), running the kernel's checks only then.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    module = ctx.spec.module
    if module is not None and module in ctx.kernel.unloaded:
        yield Hit(
            f"module {module} is not loaded: kprobe_events accepts the probe and holds it pending, "
            f"unarmed, until {module} loads; the kernel checks it only then",
            (f"give {module}.ko with the kernel it loads into to check what the load will do",),
        )


RULE = Rule(
    id="KP413",
    name="module-not-loaded",
    severity=Severity.WARNING,
    stage=Stage.FRONTEND,
    check=check,
    kernel_function="kernel/trace/trace_kprobe.c:register_trace_kprobe",
)
