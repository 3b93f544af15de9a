"""KP207: an instruction of the jump window cannot be copied into the detour buffer and run there.

arch/x86/kernel/kprobes/opt.c `copy_optimized_instructions`: each instruction of the window
(whole instructions from P until >= 5 bytes) must pass `__copy_instruction` and `can_boost`
(no call, no relative jmp/jcc/loop, no int3 -- including the int3 padding after a final ``ret`` --,
no exception-table entry, ...); otherwise -EINVAL and the probe stays an int3 probe.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.arch import x86
from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.disasm import excerpt, insn_text
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.address is not None
    window = ctx.window()
    relaxed = ctx.kernel.at_least(6, 9)
    for insn in window:
        why = x86.optprobe_refusal(insn, ctx.image.in_extable(insn.address), relaxed_groups=relaxed)
        if why is not None:
            yield Hit(
                f"the jump window of {ctx.where()} holds {ctx.image.describe(insn.address)} "
                f"({insn_text(ctx.image, insn)}): {why}; it stays an int3 probe",
                lambda: excerpt(ctx.image, ctx.function(), ctx.address, marked=range(ctx.address, window[-1].end)),
            )
            return


RULE = Rule("KP207", "window-not-boostable", Severity.WARNING, Stage.OPTIMIZE, check,
            "arch/x86/kernel/kprobes/opt.c:copy_optimized_instructions")
