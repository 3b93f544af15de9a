"""KP405: a ``.cold`` / ``.part`` piece of the function branches into this probe's jump window.

`can_optimize` (arch/x86/kernel/kprobes/opt.c) scans only the kallsyms symbol that contains the
probe. The compiler moves unlikely paths of ``foo`` into ``foo.cold``, which jumps back into
``foo``; such a jump into P+1..P+5 is not seen, the probe is optimized anyway, and the jump then
lands inside the optprobe's 5-byte jump: a crash when that path runs.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.disasm import insn_text
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    image, sym, address = ctx.image, ctx.symbol, ctx.address
    if image is None or sym is None or address is None or not ctx.verdict.optimized:
        return
    for piece in image.symbols.pieces_of(sym.name.split(".", 1)[0]):
        if piece.address == sym.address:
            continue
        found = image.function(piece).branch_into_window(address)
        if found is not None:
            target, insn = found
            yield Hit(f"{image.describe(insn.address)} ({insn_text(image, insn)}) jumps to {image.describe(target)}, "
                      f"inside the jump the kernel writes at {ctx.where()}: the kernel checks only {sym.name} and "
                      f"optimizes it anyway; that path would crash",
                      ("move the probe so that P+1..P+5 holds no branch target",))
            return


RULE = Rule("KP405", "branch-from-piece", Severity.WARNING, Stage.INFO, check,
            "arch/x86/kernel/kprobes/opt.c:can_optimize")
