"""KP401: SYM+OFF runs past the end of SYM; the kernel silently probes the next symbol.

`_kprobe_addr()` adds the offset, then asks kallsyms which symbol contains the result and
re-bases the probe onto it, so every later rule (function entry, blacklist, boundaries) is
judged against that other symbol.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    named, sym = ctx.named, ctx.symbol
    if named is None or sym is None or named.address == sym.address:
        return
    yield Hit(
        f"offset {ctx.spec.offset:#x} is past the end of {named.name} (size {named.size:#x}): "
        f"the kernel probes {ctx.where()} instead"
    )


RULE = Rule(
    id="KP401",
    name="offset-past-symbol",
    severity=Severity.INFO,
    stage=Stage.INFO,
    check=check,
    kernel_function="kernel/kprobes.c:_kprobe_addr",
)
