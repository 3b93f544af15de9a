"""KP103: the address is not kernel text (data, init text after boot, .exit.text, ...)."""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    image, address = ctx.image, ctx.address
    assert image is not None and address is not None
    if image.is_text(address):
        return
    sec = image.section_at(address)
    if image.is_init_text(address):
        why = "init text, freed once the kernel has booted" if not image.is_module else \
            "module init text, freed once the module is live"
    elif sec is None:
        why = "not in any allocated section"
    elif sec.is_exec:
        why = f"in {sec.name}, which is not core kernel text"
    else:
        why = f"in {sec.name}, which is data, not text"
    yield Hit(f"{ctx.where()} is {why}")


RULE = Rule(
    id="KP103",
    name="not-kernel-text",
    severity=Severity.ERROR,
    stage=Stage.ADDRESS,
    check=check,
    kernel_function="kernel/kprobes.c:check_kprobe_address_safe",
    errno="EINVAL",
)
