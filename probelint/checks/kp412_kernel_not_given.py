"""KP412: a probe in a module checked without the vmlinux it is loaded into.

What the kernel decides from its own image cannot be known from the .ko alone: the boot-time
patching of the module's text (arch/x86/kernel/module.c `module_finalize`: `apply_paravirt` reads
pv_ops, `apply_retpolines` and `apply_returns` the thunks' addresses), the targets of jumps into
the kernel (a retpoline thunk is an indirect jump to `insn_is_indirect_jump`), and whether a plain
SYM is unique (`number_of_same_symbols` counts the vmlinux's kallsyms). Such a probe is reported as
not checked, with what it depends on, rather than given a verdict that may be wrong. A patched
site decides the registration of a probe on it, and the optimization of a probe whose jump window
reaches it; a thunk jump decides only whether the function's probes are optimized (KP205 looks at
every jump): those probes are checked for registration, their `optimized` is left unknown (null).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity
from probelint.image.module import Module

_HOW = "give the vmlinux the module was built for (the -dbg package's /usr/lib/debug/boot/vmlinux-RELEASE)"


def check(ctx: ProbeContext) -> Iterator[Hit]:
    image, symbol, address = ctx.image, ctx.symbol, ctx.address
    if ctx.kernel.vmlinux is not None or not isinstance(image, Module) or symbol is None or address is None:
        return
    if ctx.spec.module is None and ctx.spec.symbol is not None:
        yield _not_checked(image, f"whether {ctx.spec.symbol} is unique depends on the vmlinux's kallsyms too")
        return
    # the probed instruction and the jump window, decoded from the file's bytes, which equal the
    # live ones up to the first patched site they meet
    window = ctx.window()
    insn_end = window[0].end if window else address + 1
    depends = image.sites_read(window[0].address if window else address, insn_end)
    if depends is not None:  # the probed instruction itself: its boundaries, what is copied
        yield _not_checked(image, f"{symbol.name} has {depends}, which the kernel patches from its own image")
        return
    depends = image.sites_read(insn_end, max(ctx.window_end(), insn_end)) or image.thunk_jumps(symbol.address,
                                                                                                symbol.end)
    if depends is not None:
        yield Hit(f"no vmlinux was given with {image.name}: {symbol.name} has {depends}, which the kernel patches "
                  "or resolves from its own image, so whether the probe is optimized was not checked "
                  "(its registration was)", (_HOW,), optimization_only=True)


def _not_checked(image: Module, why: str) -> Hit:
    return Hit(f"no vmlinux was given with {image.name}: {why}, so the probe was not checked", (_HOW,))


RULE = Rule(
    id="KP412",
    name="kernel-not-given",
    severity=Severity.WARNING,
    stage=Stage.FRONTEND,
    check=check,
    kernel_function="arch/x86/kernel/module.c:module_finalize",
    leaves_unchecked=True,
)
