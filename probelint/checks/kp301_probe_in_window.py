"""KP301 / KP302: probes of one set that interfere through a jump window (see interference.py).

KP301 is reported on the outer probe P (not optimized: another armed probe lies inside its
window, `arch_check_optimized_kprobe`); KP302 on the inner probe X (arming it unoptimizes P,
`get_optimized_kprobe`). Both are decided for the whole set by `probelint.interference`.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    return iter(())  # a set-level rule: probelint.interference.check_set decides it


RULE = Rule("KP301", "probe-in-window", Severity.WARNING, Stage.INFO, check,
            "arch/x86/kernel/kprobes/opt.c:arch_check_optimized_kprobe")
