"""KP412: a probe in a module checked without the vmlinux it is loaded into.

What the kernel decides from its own image cannot be known from the .ko alone: the boot-time
patching of the module's text (arch/x86/kernel/module.c `module_finalize`: `apply_paravirt` reads
pv_ops, `apply_retpolines` and `apply_returns` the thunks' addresses), the targets of jumps into
the kernel (a retpoline thunk is an indirect jump to `insn_is_indirect_jump`), and whether a plain
SYM is unique (`number_of_same_symbols` counts the vmlinux's kallsyms). Such a probe is reported as
not checked, with what it depends on, rather than given a verdict that may be wrong. A paravirt
site decides only the probes that read it (at or inside the site, or a jump window reaching it);
a thunk jump decides the whole function (KP205 looks at every jump).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity
from probelint.image.module import Module

_HOW = "give the vmlinux the module was built for (the -dbg package's /usr/lib/debug/boot/vmlinux-RELEASE)"


def check(ctx: ProbeContext) -> Iterator[Hit]:
    image, symbol = ctx.image, ctx.symbol
    if ctx.kernel.vmlinux is not None or not isinstance(image, Module) or symbol is None:
        return
    if ctx.spec.module is None and ctx.spec.symbol is not None:
        why = f"whether {ctx.spec.symbol} is unique depends on the vmlinux's kallsyms too"
    else:
        assert ctx.address is not None
        # what the probe reads: its instruction and jump window, decoded from the file's bytes,
        # which equal the live ones up to the first site they meet
        reads = (ctx.address, max(ctx.window_end(), ctx.address + 1))
        depends = image.needs_vmlinux(symbol.address, symbol.end, reads)
        if depends is None:
            return
        why = f"{symbol.name} has {depends}, which the kernel patches or resolves from its own image"
    yield Hit(f"no vmlinux was given with {image.name}: {why}, so the probe was not checked", (_HOW,))


RULE = Rule(
    id="KP412",
    name="kernel-not-given",
    severity=Severity.WARNING,
    stage=Stage.FRONTEND,
    check=check,
    kernel_function="arch/x86/kernel/module.c:module_finalize",
    leaves_unchecked=True,
)
