"""KP104: the address is not where an instruction starts when decoding from the symbol start.

x86 `can_probe()` decodes the containing kallsyms symbol linearly with the kernel's decoder and
accepts the address only if the walk lands exactly on it; an undecodable instruction on the way
makes every later address unprobeable.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.disasm import excerpt
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    fn = ctx.function()
    address = ctx.address
    assert address is not None and ctx.image is not None
    if fn.is_boundary(address):
        return
    describe = ctx.image.describe
    bad = fn.undecodable
    if bad is not None and bad.address < address:
        yield Hit(
            f"{ctx.where()} cannot be reached by the kernel's decoder: the bytes at "
            f"{describe(bad.address)} ({bad.raw.hex(' ')}) do not decode",
            lambda: excerpt(ctx.image, fn, bad.address),
        )
        return
    inside = fn.insn_at_or_before(address)
    if inside is None:
        yield Hit(f"{ctx.where()} cannot be decoded: the image holds no bytes for {fn.symbol.name}")
        return
    after = fn.insn_after(address)
    nearest = [describe(inside.address)] + ([describe(after.address)] if after is not None else [])
    yield Hit(
        f"{ctx.where()} is not on an instruction boundary: it is byte {address - inside.address} "
        f"of a {inside.length}-byte instruction at {describe(inside.address)}",
        lambda: (*excerpt(ctx.image, fn, address), f"nearest boundaries: {', '.join(nearest)}"),
    )


RULE = Rule(
    id="KP104",
    name="not-insn-boundary",
    severity=Severity.ERROR,
    stage=Stage.INSN,
    check=check,
    kernel_function="arch/x86/kernel/kprobes/core.c:can_probe",
    errno="EILSEQ",
)
