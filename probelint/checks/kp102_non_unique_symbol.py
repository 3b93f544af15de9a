"""KP102: a plain SYM that names more than one kallsyms symbol is refused by the front-end.

From 6.12 (`validate_probe_symbol` -> `validate_module_probe_symbol`) a ``MOD:SYM`` is counted
too, in MOD's own kallsyms when MOD is loaded: several static copies of one inline function
(``xfs:uuid_copy``, ``nf_tables:jhash``) are "not unique". 6.1.y counts plain names only. From
7.1 (and 7.0.10) a plain SYM the vmlinux has is counted in the vmlinux alone: a module's copy of
the name no longer makes it "not unique". A
``MOD:SYM`` defined before MOD loads is counted when MOD arrives (`register_module_trace_kprobe`),
in its whole symtab (init symbols included), and refused with the raw -EADDRNOTAVAIL; a plain SYM
is counted when written, without the modules yet to arrive.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    spec = ctx.spec
    if spec.symbol is None:
        return
    if spec.module is not None:
        yield from _in_module(ctx, spec.module, spec.symbol)
        return
    if not ctx.kernel.does("unique-symbol"):
        return  # 5.10.y: kprobe_events probes the first symbol of the name
    live, loaded = ctx.kernel.live, []
    if live is not None:  # the running kernel: every loaded module counts, not only those given
        given = {image.name for image in ctx.kernel.images}
        loaded = [(f"loaded module {m}", n) for m, n in live.module_symbol_count(spec.symbol).items()
                  if m not in given]
    per_image = ctx.kernel.same_symbols(spec.symbol, written=True, loaded=loaded)
    total = sum(n for _, n in per_image)
    if total > 1:
        where = ", ".join(f"{n} in {name}" for name, n in per_image if n)
        yield Hit(
            f"symbol {spec.symbol} is not unique ({where}): kprobe_events refuses it",
            ("probe by address instead (0x...), or MOD:SYM for a module symbol",),
            # >= 6.12 validate_probe_symbol() fails to parse_error: -EINVAL (perf/BPF: EADDRNOTAVAIL)
            errno="EINVAL" if ctx.kernel.does("validate-probe-symbol") else None,
        )


def _in_module(ctx: ProbeContext, module: str, symbol: str) -> Iterator[Hit]:
    image = ctx.kernel.module(module)
    if image is None or not ctx.kernel.does("validate-probe-symbol"):
        return  # 6.1.y does not count MOD:SYM; a module not loaded is counted when it arrives
    count = image.symbols.count(symbol)
    if count > 1 and image.coming:
        # defined before the load: register_module_trace_kprobe validates at MODULE_STATE_COMING,
        # init symbols counted, and the callback logs the raw error ("Failed to re-register probe")
        yield Hit(f"symbol {symbol} is not unique in module {image.name} ({count} symbols of that name, init "
                  f"text included while it loads): {module}:{symbol} is held pending and refused when "
                  f"{module} arrives", ("probe by address instead (0x...)",), errno="EADDRNOTAVAIL")
    elif count > 1:
        yield Hit(f"symbol {symbol} is not unique in module {image.name} ({count} symbols of that name): "
                  f"kprobe_events refuses {module}:{symbol}",
                  ("probe by address instead (0x...)",), errno="EINVAL")


RULE = Rule(
    id="KP102",
    name="non-unique-symbol",
    severity=Severity.ERROR,
    stage=Stage.FRONTEND,
    check=check,
    kernel_function="kernel/trace/trace_kprobe.c:number_of_same_symbols",
    errno="EADDRNOTAVAIL",
)
