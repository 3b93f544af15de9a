"""KP115: a return probe on a function in the x86 kretprobe blacklist (``__switch_to``).

kernel/kprobes.c `register_kretprobe` compares the probe address with each
`kretprobe_blacklist[]` entry (arch/x86/kernel/kprobes/core.c: ``__switch_to``, which switches
the current task under the return address) -> -EINVAL.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity

KRETPROBE_BLACKLIST = ("__switch_to",)  # arch/x86/kernel/kprobes/core.c


def check(ctx: ProbeContext) -> Iterator[Hit]:
    if not ctx.spec.is_return or ctx.address is None:
        return
    for name in KRETPROBE_BLACKLIST:
        found = ctx.kernel.lookup_name(name)
        if found is not None and found[1].address == ctx.address:
            yield Hit(f"{name} is on the kretprobe blacklist: return probes on it are refused")


RULE = Rule("KP115", "kretprobe-blacklist", Severity.ERROR, Stage.RESOLVE, check,
            "kernel/kprobes.c:register_kretprobe", "EINVAL")
