"""KP204: the kernel's decoder fails somewhere in the function, so it will not optimize any probe in it.

arch/x86/kernel/kprobes/opt.c `can_optimize` decodes the whole symbol; a failure -> not optimized.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    bad = ctx.function().undecodable
    if bad is not None and ctx.image is not None:
        yield Hit(f"the kernel cannot decode {ctx.image.describe(bad.address)} ({bad.raw.hex(' ')}): "
                  f"no probe in this function can be jump-optimized")


RULE = Rule("KP204", "function-undecodable", Severity.WARNING, Stage.OPTIMIZE, check,
            "arch/x86/kernel/kprobes/opt.c:can_optimize")
