"""KP209: the kernel is built without OPTPROBES: every kprobe stays an int3 probe.

kernel/kprobes.c `try_to_optimize_kprobe` exists only with CONFIG_OPTPROBES (x86: def_bool y
with KPROBES); a .config given with --config can say otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    if ctx.kernel.disabled("OPTPROBES"):
        yield Hit(f"{ctx.where()} stays an int3 probe: the kernel is built without OPTPROBES")


RULE = Rule("KP209", "optprobes-disabled", Severity.WARNING, Stage.OPTIMIZE, check,
            "kernel/kprobes.c:try_to_optimize_kprobe")
