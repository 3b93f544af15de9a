"""KP302: this probe lies inside another probe's jump window and forces it back to int3.

kernel/kprobes.c `get_optimized_kprobe` scans the 18 bytes below a newly armed probe for an
optimized probe whose window covers it and unoptimizes that probe (`unoptimize_kprobe(P, true)`).
Decided for the whole probe set by `probelint.interference`.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    return iter(())  # a set-level rule: probelint.interference.check_set decides it


RULE = Rule("KP302", "splits-optimized-probe", Severity.INFO, Stage.INFO, check,
            "kernel/kprobes.c:get_optimized_kprobe")
