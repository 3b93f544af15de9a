"""KP202: fewer than 5 bytes remain to the end of the kallsyms symbol: no room for the jump.

arch/x86/kernel/kprobes/opt.c `can_optimize`: ``size - offset < JMP32_INSN_SIZE`` -> not optimized.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.arch.x86 import decode as x86
from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.symbol is not None
    left = ctx.symbol.size - ctx.offset
    if left < x86.JMP32_INSN_SIZE:
        yield Hit(f"{ctx.where()} is {left} byte{'s' if left != 1 else ''} from the end of {ctx.symbol.name}: "
                  f"the 5-byte optprobe jump does not fit, so it stays an int3 probe")


RULE = Rule("KP202", "jump-does-not-fit", Severity.WARNING, Stage.OPTIMIZE, check,
            "arch/x86/kernel/kprobes/opt.c:can_optimize")
