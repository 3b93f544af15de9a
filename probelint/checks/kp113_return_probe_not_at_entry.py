"""KP113: a return probe (kretprobe) must sit on a function entry.

kernel/trace/trace_kprobe.c `__trace_kprobe_create` asks `kprobe_on_func_entry(NULL, sym, off)`
and refuses a return probe elsewhere (BAD_RETPROBE); `register_kretprobe` repeats the test for
address probes. "Entry" is judged after re-basing (`_kprobe_addr`): offset 0 of the kallsyms
symbol that contains the address (offsets 0 and 4 after an IBT ENDBR: `arch_adjust_kprobe_addr`).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    if not ctx.spec.is_return or ctx.symbol is None or ctx.address is None:
        return
    if not ctx.on_func_entry:
        yield Hit(f"return probe at {ctx.where()}: a kretprobe must be on a function entry "
                  f"({ctx.symbol.name}+0x0)")


RULE = Rule("KP113", "return-probe-not-at-entry", Severity.ERROR, Stage.FRONTEND, check,
            "kernel/kprobes.c:kprobe_on_func_entry", "EINVAL")
