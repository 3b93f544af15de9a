"""KP002: an offset written with a leading 0 is octal to the kernel (`kstrtol(s, 0)`)."""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Fix, Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    spec = ctx.spec
    if spec.octal_offset:
        written = spec.text.split("+", 1)[-1].split("%", 1)[0]
        yield Hit(
            f"offset {written} has a leading 0: the kernel reads it as octal, "
            f"{spec.offset} = {spec.offset:#x}, not decimal {int(written, 10) if written.isdigit() else '?'}",
            (f"write {spec.offset:#x} if you mean the octal value, or drop the leading 0",),
            fix=Fix(spec.text.replace(f"+{written}", f"+{spec.offset:#x}", 1), True,
                    f"spell the offset the kernel reads, {spec.offset:#x}"),
        )


RULE = Rule(
    id="KP002",
    name="octal-offset",
    severity=Severity.WARNING,
    stage=Stage.INPUT,
    check=check,
    kernel_function="kernel/trace/trace_probe.c:traceprobe_split_symbol_offset",
)
