"""KP205: the function contains an indirect jump, or (6.1 + RETPOLINE) a jump into the thunk area.

arch/x86/kernel/kprobes/opt.c `insn_is_indirect_jump`: ``jmp *x`` (ff /4, /5), ``ljmp`` (ea), and
with CONFIG_RETPOLINE any relative jump whose target is in [__indirect_thunk_start,
__indirect_thunk_end] -- a range that in 6.1.y also holds the return thunks. Whether a function's
returns are such jumps depends on the CPU (`--cpu-profile`): with `rethunk` (AMD retbleed/SRSO)
every function that returns is caught here; with `ret` the returns are patched to ``ret``.
From 6.6 ("x86/retpoline,kprobes: Skip optprobe check for indirect jumps with retpolines and
IBT") the whole test is skipped when RETPOLINE or X86_KERNEL_IBT is configured, and the
thunk-range test is gone.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.disasm import insn_text
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.symbol is not None
    kernel = ctx.kernel
    modern = kernel.does("optprobe-indirect-jump-skip")
    if modern and (kernel.enabled("RETPOLINE") or kernel.enabled("X86_KERNEL_IBT")):
        return  # the row: the test is compiled out with retpolines or IBT (no jump tables then)
    fn = ctx.function()
    thunks = None if modern else kernel.thunk_range
    candidates = [(insn.address, f"an indirect jump ({insn_text(ctx.image, insn)})") for insn in fn.indirect_jumps[:1]]
    into_thunks = fn.branch_into(*thunks) if thunks is not None else None
    if into_thunks is not None:
        insn = into_thunks[1]
        candidates.append((insn.address, f"a jump into the retpoline/return-thunk area ({insn_text(ctx.image, insn)})"))
    if candidates:
        address, why = min(candidates)
        yield Hit(f"{ctx.symbol.name} has {why} at {ctx.image.describe(address)}: the kernel does not "
                  f"jump-optimize probes in functions with indirect jumps (cpu profile: {ctx.image.profile.value})")


RULE = Rule("KP205", "function-has-indirect-jump", Severity.WARNING, Stage.OPTIMIZE, check,
            "arch/x86/kernel/kprobes/opt.c:insn_is_indirect_jump")
