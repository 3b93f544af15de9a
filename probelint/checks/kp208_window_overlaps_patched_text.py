"""KP208: the jump window overlaps text the kernel patches (ftrace, jump label, static call).

arch/x86/kernel/kprobes/opt.c `copy_optimized_instructions`: [P, P + len - 1] must not overlap
`ftrace_text_reserved`, `jump_label_text_reserved` or `static_call_text_reserved` -> -EBUSY.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.address is not None
    window = ctx.window()
    if not window:
        return
    start, end = ctx.address, window[-1].end
    image = ctx.image
    for what, site in (("ftrace call site", image.ftrace_site_in(start, end)),
                       ("jump-label site", image.site_overlapping("jump_table", start, end)),
                       ("static-call site", image.site_overlapping("static_call_sites", start, end))):
        if site is not None:
            yield Hit(f"the jump window of {ctx.where()} ({end - start} bytes) overlaps the {what} at "
                      f"{image.describe(site)}: it stays an int3 probe")
            return


RULE = Rule("KP208", "window-overlaps-patched-text", Severity.WARNING, Stage.OPTIMIZE, check,
            "arch/x86/kernel/kprobes/opt.c:copy_optimized_instructions")
