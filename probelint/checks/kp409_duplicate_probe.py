"""KP409: the set already holds a probe at this address, of the same kind.

kernel/kprobes.c `register_kprobe` -> `register_aggr_kprobe`: a second probe at the same address
is chained to the first one; it adds nothing to the probe list but another handler call.

Only a duplicate within one file offers a fix, and an unsafe one (removing it stops its handler
running for that probe): the files of one run are often independent programs, and a probe must
not leave one file because another has it.
"""

from __future__ import annotations

from probelint.checks import Emit, ProbeResult, Rule, Stage
from probelint.findings import Fix, Severity


def check_set(results: list[ProbeResult], emit: Emit) -> None:
    first_in_set: dict[tuple[int, int, bool], ProbeResult] = {}
    first_in_file: dict[tuple[int, int, bool, str], ProbeResult] = {}
    for result in results:
        ctx = result.context
        if ctx is None or ctx.image is None or ctx.address is None or not result.verdict.registers:
            continue
        key = (id(ctx.image), ctx.address, ctx.spec.is_return)
        first = first_in_set.setdefault(key, result)
        same_file = first_in_file.setdefault((*key, ctx.spec.location.file), result)
        if first is result:
            continue
        earlier = same_file if same_file is not result else first
        fix = Fix("", False, "remove the duplicate probe", remove=True) if same_file is not result else None
        emit(result, "KP409", f"{ctx.where()} is already probed at {earlier.spec.location}: the kernel aggregates "
                              f"both on one kprobe", fix=fix)


RULE = Rule("KP409", "duplicate-probe", Severity.INFO, Stage.SET, None, "kernel/kprobes.c:register_aggr_kprobe",
            check_set=check_set)
