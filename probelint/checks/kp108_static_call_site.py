"""KP108: the address lies in an inline static-call site (a 5-byte call the kernel retargets).

kernel/kprobes.c `check_kprobe_address_safe` -> kernel/static_call_inline.c
`static_call_text_reserved(addr, addr)`: site <= addr < site + 5 refuses the probe.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.checks._sites import site_hit
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.address is not None
    site = ctx.image.site_overlapping("static_call_sites", ctx.address, ctx.address + 1)
    return site_hit(ctx, site, "static-call site")


RULE = Rule("KP108", "static-call-site", Severity.ERROR, Stage.ADDRESS, check,
            "kernel/static_call_inline.c:static_call_text_reserved", "EINVAL")
