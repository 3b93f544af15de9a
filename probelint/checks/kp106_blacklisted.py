"""KP106: the address is on the kprobe blacklist (NOKPROBE_SYMBOL, .kprobes.text, noinstr,
entry text), directly or through the base name of a ``foo.cold`` / ``foo.isra.0`` piece.

kernel/kprobes.c `within_kprobe_blacklist`, built by `populate_kprobe_blacklist` (and
`add_module_kprobe_blacklist` for modules): each `_kprobe_blacklist` address a becomes
[a, a + kallsyms size); `kprobe_add_area_blacklist` walks .kprobes.text, .noinstr.text and
(x86 `arch_populate_kprobe_blacklist`) entry text symbol by symbol, each entry as long as the
full kallsyms symbol containing the walk position.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    image, sym, address = ctx.image, ctx.symbol, ctx.address
    assert image is not None and sym is not None and address is not None
    # a module's own entries are added at its MODULE_STATE_COMING by kprobes_module_callback
    # (notifier priority 0), after trace_kprobe_module_callback (2) registered the pending probes
    why = None if image.coming else image.blacklist.reason(address)
    if why is None:
        base = sym.name.split(".", 1)[0]
        found = ctx.kernel.lookup_name(base) if base != sym.name else None
        if found is not None:
            base_why = found[0].blacklist.reason(found[1].address)
            if base_why is not None:
                why = f"its base function {base} is blacklisted ({base_why})"
    if why is not None:
        yield Hit(f"{ctx.where()} is blacklisted for kprobes: {why}")


RULE = Rule(
    id="KP106",
    name="blacklisted",
    severity=Severity.ERROR,
    stage=Stage.ADDRESS,
    check=check,
    kernel_function="kernel/kprobes.c:within_kprobe_blacklist",
    errno="EINVAL",
)
