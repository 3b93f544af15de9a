"""KP116: a kernel with change-table row exception-insn refuses probes on INT3, INT n, INTO, INT1
and UD0/UD1/UD2.

arch/x86/kernel/kprobes/core.c `can_probe` -> `is_exception_insn` (image/changes.py row
"exception-insn"): such an instruction at the probe address -> -EILSEQ. Kernels without it
refuse an INT3 later, in `__copy_instruction` (-EINVAL, KP110), and accept the others.
A UD2 listed in `__bug_table` is refused before, by `find_bug` (KP109).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.arch.x86 import decode as x86
from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.disasm import insn_text
from probelint.findings import Severity
from probelint.image.changes import cite


def check(ctx: ProbeContext) -> Iterator[Hit]:
    if not ctx.kernel.does("exception-insn"):
        return
    insn = ctx.insn()
    if insn is not None and insn.address == ctx.address and x86.is_exception_insn(insn):
        yield Hit(f"{ctx.where()} is an exception instruction ({insn_text(ctx.image, insn)}): "
                  f"can_probe refuses it ({cite('exception-insn')})")


RULE = Rule("KP116", "exception-insn", Severity.ERROR, Stage.INSN, check,
            "arch/x86/kernel/kprobes/core.c:is_exception_insn", "EILSEQ")
