"""KP206: another instruction of the function jumps into the bytes the optprobe jump would overwrite.

arch/x86/kernel/kprobes/opt.c `can_optimize`: any jmp/jcc/loop/jcxz of the containing symbol
whose target t satisfies P+1 <= t <= P+5 (`insn_jump_into_range(insn, P + 1, 4)`, inclusive at
both ends, so a target of exactly P+5 also counts) -> not optimized. Calls are not considered,
nor branches from other symbols (a `foo.cold` jumping back into `foo` is not seen).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.arch.x86 import decode as x86
from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.disasm import excerpt, insn_text
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.address is not None
    fn = ctx.function()
    found = fn.branch_into_window(ctx.address)
    if found is None:
        return
    target, insn = found
    describe = ctx.image.describe
    window = ctx.window()
    end = window[-1].end if window else ctx.address + x86.JMP32_INSN_SIZE
    yield Hit(
        lambda: f"{describe(insn.address)} ({insn_text(ctx.image, insn)}) jumps to {describe(target)}, inside "
                f"the 5 bytes the optprobe jump at {ctx.where()} would overwrite: it stays an int3 probe",
        lambda: excerpt(ctx.image, fn, ctx.address, marked=range(ctx.address, end)),
    )


RULE = Rule("KP206", "jump-into-window", Severity.WARNING, Stage.OPTIMIZE, check,
            "arch/x86/kernel/kprobes/opt.c:insn_jump_into_range")
