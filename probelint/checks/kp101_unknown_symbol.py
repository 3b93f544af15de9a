"""KP101: the symbol is not in kallsyms, or the address lies in no kallsyms symbol."""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity
from probelint.readers.spec import KPROBE_EVENTS


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
        # >= 6.12 kprobe_events refuses a plain unknown symbol while parsing (validate_probe_symbol);
        # register_kprobe() itself answers ENOENT (_kprobe_addr)
        errno = ("EINVAL" if spec.module is None and spec.origin.path == KPROBE_EVENTS and ctx.kernel.at_least(6, 12)
                 else None)
        yield Hit(f"unknown symbol {spec.symbol}: not in {scope}", tuple(notes), errno=errno)
    elif ctx.address is not None:
        yield Hit(f"address {ctx.address:#x} is not inside any kallsyms symbol")


RULE = Rule(
    id="KP101",
    name="unknown-symbol",
    severity=Severity.ERROR,
    stage=Stage.RESOLVE,
    check=check,
    kernel_function="kernel/kprobes.c:_kprobe_addr",
    errno="ENOENT",
)
