"""KP111: the probed instruction is one kprobes cannot single-step or emulate.

arch/x86/kernel/kprobes/core.c `prepare_emulation`: far call/jmp, iret, VMX instructions,
indirect far branches and ``call/jmp *mem`` (only register operands are emulated) -> -EOPNOTSUPP.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.arch.x86 import decode as x86
from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.disasm import insn_text
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    insn = ctx.insn()
    if insn is None:
        return
    why = x86.emulation_refusal(insn)
    if why is not None:
        yield Hit(f"the instruction at {ctx.where()} ({insn_text(ctx.image, insn)}) is {why}: "
                  f"kprobes cannot emulate it")


RULE = Rule("KP111", "unemulated-insn", Severity.ERROR, Stage.INSN, check,
            "arch/x86/kernel/kprobes/core.c:prepare_emulation", "EOPNOTSUPP")
