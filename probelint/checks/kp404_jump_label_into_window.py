"""KP404: a jump label elsewhere in the function can become a jump into this probe's window.

A jump-label site is a NOP while its static key is off and ``jmp target`` while it is on
(kernel/jump_label.c). `can_optimize` (arch/x86/kernel/kprobes/opt.c) scans the function as it is
at optimization time and does not re-check when a key flips later, so the verdict depends on
the key's state: with the branch taken into P+1..P+5 the kernel refuses to optimize (KP206); if
the key flips after the probe was optimized, the branch jumps into the middle of the optprobe jump.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from probelint.arch.x86 import decode as x86
from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    image, sym, address = ctx.image, ctx.symbol, ctx.address
    if image is None or sym is None or address is None or not ctx.verdict.optimized:
        return
    lo, hi = address + 1, address + x86.JMP32_INSN_SIZE
    starts, _ = image.site_ranges("jump_table")
    first = bisect.bisect_left(starts, sym.address)
    last = bisect.bisect_left(starts, sym.end, first)
    for k in range(first, last):
        site = starts[k]
        target = image.jump_label_target(site)
        if target is not None and lo <= target <= hi:
            yield Hit(f"the jump label at {image.describe(site)} branches to {image.describe(target)} when its "
                      f"static key is on: the kernel then does not optimize {ctx.where()}, and a key flipped "
                      f"after optimization jumps into the optprobe's jump")
            return


RULE = Rule("KP404", "jump-label-into-window", Severity.INFO, Stage.INFO, check,
            "arch/x86/kernel/kprobes/opt.c:can_optimize")
