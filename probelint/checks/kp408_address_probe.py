"""KP408: a probe written as a raw address; ``SYM+OFF`` says the same and survives rebuilds.

The kernel probes the address as given (`_kprobe_addr` re-bases it onto its kallsyms symbol);
the fix rewrites it in the form the kernel itself reports (`kprobes/list`), which stays
meaningful when the next build moves the function. Only for unique names (a duplicated name
would make kprobe_events refuse the rewritten probe, KP102).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Fix, Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    spec, sym = ctx.spec, ctx.symbol
    if spec.address is None or sym is None or ctx.image is None or ctx.address != spec.address:
        return
    if ctx.kernel.count(sym.name) != 1:
        return
    where = ctx.image.describe(spec.address)
    yield Hit(f"{spec.text} is {where}", fix=Fix(where + ("%return" if spec.is_return else ""), True,
                                               f"write {where}, as the kernel names it"))


RULE = Rule("KP408", "address-probe", Severity.INFO, Stage.INFO, check, "kernel/kprobes.c:_kprobe_addr")
