"""KP409: the set already holds a probe at this address (decided by `engine._duplicates`).

kernel/kprobes.c `register_kprobe` -> `register_aggr_kprobe`: a second probe at the same address
is chained to the first one; it adds nothing to the probe list but another handler call.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    return iter(())  # a set-level rule


RULE = Rule("KP409", "duplicate-probe", Severity.INFO, Stage.INFO, check, "kernel/kprobes.c:register_aggr_kprobe")
