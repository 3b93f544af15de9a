"""KP301: another armed probe of the set lies inside this probe's jump window, so this probe
stays an int3 probe.

arch/x86/kernel/kprobes/opt.c `arch_check_optimized_kprobe`: P is not optimized while any other
armed probe lies at P+1 .. P+len-1 (`probelint.checks._interference`). Reported on the outer
probe P; KP302 is the same edge seen from the inner probe.
"""

from __future__ import annotations

from probelint.checks import Emit, ProbeResult, Rule, Stage
from probelint.checks._interference import window_edges
from probelint.findings import Severity


def check_set(results: list[ProbeResult], emit: Emit) -> None:
    for i, j, end in window_edges(results):
        outer, inner = results[i], results[j]
        assert outer.context is not None and inner.context is not None
        outer.verdict.optimized = False
        if "KP301" not in outer.verdict.reasons:
            outer.verdict.reasons.append("KP301")
        size = end - (outer.context.address or 0)
        emit(outer, "KP301", f"{outer.context.where()} cannot be jump-optimized: the probe {inner.context.where()} "
                             f"({inner.spec.location}) lies inside its {size}-byte jump window")


RULE = Rule("KP301", "probe-in-window", Severity.WARNING, Stage.SET, None,
            "arch/x86/kernel/kprobes/opt.c:arch_check_optimized_kprobe", check_set=check_set)
