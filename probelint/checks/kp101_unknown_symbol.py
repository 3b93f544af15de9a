"""KP101: the symbol is not in kallsyms, or the address lies in no kallsyms symbol.

Did you mean: a function gcc renamed (``finish_task_switch`` -> ``finish_task_switch.isra.0``:
its specialised copies, never the ``.cold`` piece, which is no entry) and a system call named by
its ``sys_`` name (the x86-64 entry point is ``__x64_sys_NAME``, under ARCH_HAS_SYSCALL_WRAPPER)
are offered as an (unsafe) fix: the probe then observes the copy or wrapper. A function of a
module of the tree beside the kernel (the -dbg tree, or --modules) is named with its module:
``MOD:SYM`` (offered as a fix where the tool spells it so) or ``--loaded MOD``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Fix, Severity
from probelint.readers.spec import KPROBE_EVENTS

if TYPE_CHECKING:
    from probelint.image.kernel import Image


def check(ctx: ProbeContext) -> Iterator[Hit]:
    spec = ctx.spec
    if ctx.symbol is not None or (spec.module is not None and ctx.kernel.module(spec.module) is None):
        return  # resolved, or deferred by the front-end (KP402)
    if spec.symbol is not None and ctx.named is None:
        scope = f"module {spec.module}" if spec.module else "kallsyms"
        notes = []
        if spec.module is None and ctx.kernel.vmlinux is None:
            notes.append("no vmlinux was given: only the modules' symbols were searched")
        images = [m for m in ctx.kernel.modules if spec.module in (None, m.name)]
        if any(m.has_init_symbol(spec.symbol) for m in images):
            notes.append(f"{spec.symbol} is in the module's init text, freed (with its symbols) once the module "
                         "is live")
        # >= 6.12 kprobe_events refuses an unknown symbol while parsing (validate_probe_symbol), a
        # MOD:SYM one too when MOD is loaded (validate_module_probe_symbol: measured on 7.2's
        # module init functions); register_kprobe() itself answers ENOENT (_kprobe_addr)
        # ... but not a MOD:SYM met when MOD arrives: the module callback passes on the raw -ENOENT
        arriving = any(m.coming for m in images) and spec.module is not None
        validates = spec.origin.path == KPROBE_EVENTS and not arriving
        errno = "EINVAL" if validates and ctx.kernel.does("validate-probe-symbol") else None
        fix = None
        names = _did_you_mean(ctx, images)
        if names:
            notes.append(f"did you mean {' or '.join(names)}? ({_why(spec.symbol, names[0])})")
            if len(names) == 1 and spec.text.startswith((spec.symbol, f"{spec.module}:{spec.symbol}")):
                fix = Fix(spec.text.replace(spec.symbol, names[0], 1), False, f"probe {names[0]} instead")
        elif spec.module is None and (found := _in_module(ctx)):
            where = " or ".join(f"{name} ({path.rsplit('/', 1)[-1]})" for name, path in found[:3])
            name = found[0][0]
            notes.append(f"did you mean {name}:{spec.symbol}? ({spec.symbol} is in module {where}, which this run "
                         f"does not load: probe {name}:{spec.symbol} and probelint checks it in that module, or "
                         f"run with --loaded {name})")
            if (len(found) == 1 and spec.text.startswith(spec.symbol) and spec.origin.path == KPROBE_EVENTS
                    and spec.origin.tool in _MOD_SYM_TOOLS):
                fix = Fix(f"{name}:{spec.text}", False, f"probe {name}:{spec.symbol}, in that module")
        yield Hit(f"unknown symbol {spec.symbol}: not in {scope}", tuple(notes), errno=errno, fix=fix)
    elif ctx.address is not None:
        yield Hit(f"address {ctx.address:#x} is not inside any kallsyms symbol")


_SYSCALL = re.compile(r"(?:__(?:se|do)_)?sys_(\w+)")
_CLONE = re.compile(r"\.(?:isra|constprop|part|llvm|lto_priv)\.?\d*(?:\.(?:isra|constprop|part)\.\d+)*")


def _did_you_mean(ctx: ProbeContext, images: list[Image]) -> list[str]:
    """Names in this kernel the user probably meant."""
    spec = ctx.spec
    assert spec.symbol is not None
    scope = images if spec.module else ctx.kernel.images
    clones = sorted({sym.name for image in scope for sym in image.symbols.pieces_of(spec.symbol)
                     if _CLONE.fullmatch(sym.name[len(spec.symbol):])})
    if clones:
        return clones[:3]
    syscall = _SYSCALL.fullmatch(spec.symbol)
    if syscall and spec.module is None:
        wrapper = f"__x64_sys_{syscall.group(1)}"
        if ctx.kernel.lookup_name(wrapper) is not None:
            return [wrapper]
    return []


# tools that spell a module's function MOD:SYM (kprobe_events, bpftrace's kprobe:MOD:SYM)
_MOD_SYM_TOOLS = ("kprobe_events", "bpftrace")


def _in_module(ctx: ProbeContext) -> list[tuple[str, str]]:
    """(module, path) of the modules of the tree beside the kernel that define the function the
    given images lack (those given are searched already)."""
    tree, symbol = ctx.kernel.module_tree, ctx.spec.symbol
    if tree is None or symbol is None:
        return []
    given = {m.name for m in ctx.kernel.modules}
    return [(name, path) for name, path in tree.modules_with(symbol) if name not in given]


def _why(symbol: str, name: str) -> str:
    if name.startswith("__x64_sys_"):
        return f"on x86-64 the system call's entry point is {name}, which the syscall table calls"
    return f"gcc renamed its copy of {symbol} (an IPA clone); kallsyms holds only the new name"


RULE = Rule(
    id="KP101",
    name="unknown-symbol",
    severity=Severity.ERROR,
    stage=Stage.RESOLVE,
    check=check,
    kernel_function="kernel/kprobes.c:_kprobe_addr",
    errno="ENOENT",
)
