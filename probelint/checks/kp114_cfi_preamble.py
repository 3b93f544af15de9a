"""KP114: the address lies in a ``__cfi_`` / ``__pfx_`` preamble symbol (CFI / call padding).

kernel/kprobes.c `check_kprobe_address_safe` -> `is_cfi_preamble_symbol`: the kallsyms name
containing the address starts with ``__cfi_`` or ``__pfx_`` -> -EINVAL (backported to 6.1.y;
6.1 builds have no such symbols unless CFI_CLANG, 6.2+ have ``__pfx_`` with CALL_PADDING).
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    assert ctx.symbol is not None
    if ctx.symbol.name.startswith(("__cfi_", "__pfx_")):
        yield Hit(f"{ctx.where()} is in {ctx.symbol.name}, the padding/CFI preamble before a function: "
                  f"the kernel refuses probes there")


RULE = Rule("KP114", "cfi-preamble", Severity.ERROR, Stage.ADDRESS, check,
            "kernel/kprobes.c:is_cfi_preamble_symbol", "EINVAL")
