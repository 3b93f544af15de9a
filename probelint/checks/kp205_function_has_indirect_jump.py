"""KP205: the function contains an indirect jump, or (6.1 + RETPOLINE) a jump into the thunk area.

arch/x86/kernel/kprobes/opt.c `insn_is_indirect_jump`: ``jmp *x`` (ff /4, /5), ``ljmp`` (ea), and
with CONFIG_RETPOLINE any relative jump whose target is in [__indirect_thunk_start,
__indirect_thunk_end] -- a range that in 6.1.y also holds the return thunks. Whether a function's
returns are such jumps depends on the CPU (`--cpu-profile`): with `rethunk` (AMD retbleed/SRSO)
every function that returns is caught here; with `ret` the returns are patched to ``ret``.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.arch import x86
from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.disasm import insn_text
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.symbol is not None
    thunks = ctx.kernel.thunk_range
    for insn in ctx.function().insns:
        if x86.is_indirect_jump(insn):
            why = f"an indirect jump ({insn_text(ctx.image, insn)})"
        else:
            target = x86.jump_target(insn)
            if thunks is None or target is None or not thunks[0] <= target <= thunks[1]:
                continue
            why = f"a jump into the retpoline/return-thunk area ({insn_text(ctx.image, insn)})"
        yield Hit(f"{ctx.symbol.name} has {why} at {ctx.image.describe(insn.address)}: the kernel does not "
                  f"jump-optimize probes in functions with indirect jumps (cpu profile: {ctx.image.profile.value})")
        return


RULE = Rule("KP205", "function-has-indirect-jump", Severity.WARNING, Stage.OPTIMIZE, check,
            "arch/x86/kernel/kprobes/opt.c:insn_is_indirect_jump")
