"""KP207: an instruction of the jump window cannot be copied into the detour buffer and run there.

arch/x86/kernel/kprobes/opt.c `copy_optimized_instructions`: each instruction of the window
(whole instructions from P until >= 5 bytes) must pass `__copy_instruction` and `can_boost`
(no call, no relative jmp/jcc/loop, no int3 -- including the int3 padding after a final ``ret`` --,
no exception-table entry, ...); otherwise -EINVAL and the probe stays an int3 probe.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.arch.x86 import decode as x86
from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.disasm import excerpt, insn_text
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.address is not None
    image, window = ctx.image, ctx.window()
    relaxed = ctx.kernel.does("boost-groups")
    refusals = ((insn, x86.optprobe_refusal(insn, image.in_extable(insn.address), relaxed_groups=relaxed))
                for insn in window)
    first = next(((insn, why) for insn, why in refusals if why is not None), None)  # the copy stops there
    if first is None:
        return
    insn, why = first
    yield Hit(
        lambda: f"the jump window of {ctx.where()} holds {image.describe(insn.address)} "
                f"({insn_text(image, insn)}): {why}; it stays an int3 probe",
        lambda: excerpt(image, ctx.function(), ctx.address, marked=range(ctx.address, window[-1].end)),
    )


RULE = Rule("KP207", "window-not-boostable", Severity.WARNING, Stage.OPTIMIZE, check,
            "arch/x86/kernel/kprobes/opt.c:copy_optimized_instructions")
