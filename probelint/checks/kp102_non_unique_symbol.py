"""KP102: a plain SYM that names more than one kallsyms symbol is refused by the front-end."""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    spec = ctx.spec
    if spec.symbol is None or spec.module is not None:
        return  # addresses and MOD:SYM are not counted in 6.1.y
    if not ctx.kernel.does("unique-symbol"):
        return  # 5.10.y: kprobe_events probes the first symbol of the name
    per_image = [(image.name, image.symbols.count(spec.symbol)) for image in ctx.kernel.images]
    live = ctx.kernel.live
    if live is not None:  # the running kernel: every loaded module counts, not only those given
        given = {image.name for image in ctx.kernel.images}
        per_image += [(f"loaded module {m}", n) for m, n in live.module_symbol_count(spec.symbol).items()
                      if m not in given]
    total = sum(n for _, n in per_image)
    if total > 1:
        where = ", ".join(f"{n} in {name}" for name, n in per_image if n)
        yield Hit(
            f"symbol {spec.symbol} is not unique ({where}): kprobe_events refuses it",
            ("probe by address instead (0x...), or MOD:SYM for a module symbol",),
            # >= 6.12 validate_probe_symbol() fails to parse_error: -EINVAL (perf/BPF: EADDRNOTAVAIL)
            errno="EINVAL" if ctx.kernel.does("validate-probe-symbol") else None,
        )


RULE = Rule(
    id="KP102",
    name="non-unique-symbol",
    severity=Severity.ERROR,
    stage=Stage.FRONTEND,
    check=check,
    kernel_function="kernel/trace/trace_kprobe.c:number_of_same_symbols",
    errno="EADDRNOTAVAIL",
)
