"""KP302: this probe lies inside another probe's jump window and forces it back to int3.

kernel/kprobes.c `get_optimized_kprobe` scans the 18 bytes below a newly armed probe for an
optimized probe whose window covers it and unoptimizes that probe (`unoptimize_kprobe(P, true)`).
The edges are KP301's (`probelint.checks._interference`), seen from the inner probe.
"""

from __future__ import annotations

from probelint.checks import Emit, ProbeResult, Rule, Stage
from probelint.checks._interference import window_edges
from probelint.findings import Severity


def check_set(results: list[ProbeResult], emit: Emit) -> None:
    for i, j, _ in window_edges(results):
        outer, inner = results[i], results[j]
        assert outer.context is not None and inner.context is not None
        emit(inner, "KP302", f"{inner.context.where()} lies inside the jump window of the probe "
                             f"{outer.context.where()} ({outer.spec.location}): arming it forces that probe back "
                             f"to an int3 probe")


RULE = Rule("KP302", "splits-optimized-probe", Severity.INFO, Stage.SET, None,
            "kernel/kprobes.c:get_optimized_kprobe", check_set=check_set)
