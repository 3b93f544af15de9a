"""KP409: the set already holds a probe at this address, of the same kind.

kernel/kprobes.c `register_kprobe` -> `register_aggr_kprobe`: a second probe at the same address
is chained to the first one; it adds nothing to the probe list but another handler call.
"""

from __future__ import annotations

from probelint.checks import Emit, ProbeResult, Rule, Stage
from probelint.findings import Fix, Severity


def check_set(results: list[ProbeResult], emit: Emit) -> None:
    seen: dict[tuple[int, int, bool], ProbeResult] = {}
    for result in results:
        ctx = result.context
        if ctx is None or ctx.image is None or ctx.address is None or not result.verdict.registers:
            continue
        key = (id(ctx.image), ctx.address, ctx.spec.is_return)
        first = seen.setdefault(key, result)
        if first is not result:
            emit(result, "KP409", f"{ctx.where()} is already probed at {first.spec.location}: the kernel "
                                  f"aggregates both on one kprobe",
                 fix=Fix("", True, "remove the duplicate line", remove_line=True))


RULE = Rule("KP409", "duplicate-probe", Severity.INFO, Stage.SET, None, "kernel/kprobes.c:register_aggr_kprobe",
            check_set=check_set)
