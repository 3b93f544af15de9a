"""KP414: a probe on a module's init text, defined before the module loads, is gone once it is live.

kernel/trace/trace_kprobe.c `trace_kprobe_module_callback` registers a pending ``MOD:SYM`` at
MODULE_STATE_COMING, when MOD's kallsyms still holds its init symbols and
`check_kprobe_address_safe` takes init text as text: the probe registers (ftrace-based on an
fentry site) and fires while MOD's init runs. At MODULE_STATE_LIVE kernel/kprobes.c
`kprobes_module_callback` calls `kill_kprobe` on every probe in MOD's init text: the probe is
GONE (unoptimized, disarmed, ``[GONE]`` in kprobes/list) and never fires again.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    image, address = ctx.image, ctx.address
    assert image is not None and address is not None
    if image.coming and image.is_init_text(address):
        yield Hit(f"{ctx.where()} is in the init text of {image.name}, which loads after the probe is defined: "
                  f"the probe is registered when {image.name} arrives, fires while its init runs, and is gone "
                  f"(killed, never optimized) once {image.name} is live",
                  ("a probe defined after the load is refused: the init symbols are gone from kallsyms",))


RULE = Rule(
    id="KP414",
    name="gone-after-init",
    severity=Severity.WARNING,
    stage=Stage.OPTIMIZE,
    check=check,
    kernel_function="kernel/kprobes.c:kprobes_module_callback",
)
