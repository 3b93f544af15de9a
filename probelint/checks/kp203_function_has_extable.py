"""KP203: an instruction of the function has an exception-table entry.

arch/x86/kernel/kprobes/opt.c `can_optimize`: `search_exception_tables(addr)` for any
instruction of the containing symbol -> not optimized (fixup code may jump back into it).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.symbol is not None
    insn = ctx.function().first_in(ctx.image.extable)
    if insn is not None:
        yield Hit(f"{ctx.symbol.name} has an exception-table entry at {ctx.image.describe(insn.address)}: "
                  f"no probe in it can be jump-optimized")


RULE = Rule("KP203", "function-has-extable", Severity.WARNING, Stage.OPTIMIZE, check,
            "arch/x86/kernel/kprobes/opt.c:can_optimize")
