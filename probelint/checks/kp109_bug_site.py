"""KP109: the address is a BUG()/WARN() trap (`ud2` listed in `__bug_table`).

kernel/kprobes.c `check_kprobe_address_safe` -> lib/bug.c `find_bug(addr)`: exact equality
with a `bug_entry` address refuses the probe (the int3 would hide the trap).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.checks._sites import site_hit
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.image is not None and ctx.address is not None
    return site_hit(ctx, ctx.address if ctx.address in ctx.image.bug_sites else None, "BUG/WARN trap")


RULE = Rule("KP109", "bug-site", Severity.ERROR, Stage.ADDRESS, check, "lib/bug.c:find_bug", "EINVAL")
