"""KP112: a 15-byte instruction leaves no room in its slot for the trailing int3.

arch/x86/kernel/kprobes/core.c `prepare_singlestep`: MAX_INSN_SIZE - len < 1 -> -ENOSPC.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.arch.x86 import decode as x86
from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    insn = ctx.insn()
    if insn is not None and insn.length >= x86.MAX_INSN_SIZE:
        yield Hit(f"the instruction at {ctx.where()} is {insn.length} bytes long: no room for the single-step int3")


RULE = Rule("KP112", "fifteen-byte-insn", Severity.ERROR, Stage.INSN, check,
            "arch/x86/kernel/kprobes/core.c:prepare_singlestep", "ENOSPC")
