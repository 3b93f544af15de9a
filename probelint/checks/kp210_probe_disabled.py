"""KP210: a probe marked ``# probelint: disabled`` is registered but never optimized.

kernel/kprobes.c `optimize_kprobe` skips disabled probes (`kprobe_disabled(p)`), and a disabled
(disarmed) probe inside another probe's window does not block that one
(`arch_check_optimized_kprobe` tests `kprobe_disarmed`).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    if ctx.spec.disabled:
        yield Hit(f"{ctx.where()} is registered disabled: the kernel optimizes only enabled probes")


RULE = Rule("KP210", "probe-disabled", Severity.INFO, Stage.OPTIMIZE, check, "kernel/kprobes.c:optimize_kprobe")
