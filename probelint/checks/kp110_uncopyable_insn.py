"""KP110: the probed instruction cannot be copied out of line (int3, emulate prefix, %ss load).

arch/x86/kernel/kprobes/core.c `arch_copy_kprobe` -> `__copy_instruction` fails -> -EINVAL.
The int3 case includes the int3 bytes the kernel writes at boot: with the `ret` CPU profile every
``jmp __x86_return_thunk`` becomes ``ret; int3 x4``, so its bytes 1..4 are int3 instructions.
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
    why = x86.copy_refusal(insn)
    if why is not None:
        yield Hit(lambda: f"the instruction at {ctx.where()} ({insn_text(ctx.image, insn)}) cannot be copied out "
                          f"of line: {why}")


RULE = Rule("KP110", "uncopyable-insn", Severity.ERROR, Stage.INSN, check,
            "arch/x86/kernel/kprobes/core.c:__copy_instruction", "EINVAL")
