"""KP107: the address lies in a jump-label (static key) site, which the kernel rewrites at run time.

kernel/kprobes.c `check_kprobe_address_safe` -> kernel/jump_label.c
`jump_label_text_reserved(addr, addr)`: any `__jump_table` entry with code <= addr < code + len
(len 2 or 5, from decoding the site) refuses the probe.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.checks._sites import site_hit
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.address is not None
    return site_hit(ctx, ctx.image.site_overlapping("jump_table", ctx.address, ctx.address + 1), "jump-label site")


RULE = Rule("KP107", "jump-label-site", Severity.ERROR, Stage.ADDRESS, check,
            "kernel/jump_label.c:jump_label_text_reserved", "EINVAL")
