"""KP105: kprobe_events and the perf kprobe PMU refuse functions that ftrace cannot trace.

kernel/trace/trace_kprobe.c `within_notrace_func` (DYNAMIC_FTRACE && !KPROBE_EVENTS_ON_NOTRACE):
the kallsyms symbol containing the probe must hold at least one ftrace record in
[start, start + size - 1]; if it holds none and its name has a ``.`` (``foo.cold``,
``foo.isra.0``) the base name's function (lowest address) is tested instead.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity
from probelint.image.kallsyms import KSym
from probelint.image.kernel import Image


def _traceable(image: Image, sym: KSym) -> bool:
    return image.ftrace_site_in(sym.address, sym.end) is not None


def check(ctx: ProbeContext) -> Iterator[Hit]:
    image, sym = ctx.image, ctx.symbol
    if image is None or sym is None:
        return  # unresolvable: register_kprobe() answers ENOENT (KP101)
    if _traceable(image, sym):
        return
    base = sym.name.split(".", 1)[0]
    if base != sym.name:
        found = ctx.kernel.lookup_name(base)
        if found is not None and _traceable(*found):
            return
        detail = f"neither {sym.name} nor its base function {base} has"
    else:
        detail = f"{sym.name} has"
    if ctx.address is not None and image.is_init_text(ctx.address) and not image.coming:
        yield Hit(f"{ctx.where()} is init text, freed after boot together with its ftrace records: "
                  f"kprobe_events refuses it as a notrace function")
        return
    sec = image.section_at(ctx.address) if ctx.address is not None else None
    if sec is not None and not sec.is_exec:
        yield Hit(f"{ctx.where()} is not a function but data (in {sec.name}): kprobe_events refuses it as "
                  f"a notrace function (no ftrace call site)")
        return
    yield Hit(
        f"{ctx.where()} is in a notrace function: {detail} no ftrace call site, and kprobe_events "
        f"refuses such functions (\"Could not probe notrace function\")",
    )


RULE = Rule(
    id="KP105",
    name="notrace-function",
    severity=Severity.ERROR,
    stage=Stage.FRONTEND,
    check=check,
    kernel_function="kernel/trace/trace_kprobe.c:within_notrace_func",
    errno="EINVAL",
)
