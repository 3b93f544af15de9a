"""``probelint explain IMAGE... PROBE``: one probe, the kernel's view of its function.

Prints the verdict and findings, then the function's disassembly around the probe as the
kernel sees it after boot-time patching under the chosen CPU profile, with the jump window
marked (``|``), the probe (``>``), and every branch of the function (or of its ``.cold``/``.part``
pieces) that lands in the bytes the optprobe jump overwrites (``*``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probelint.arch.x86 import decode as x86
from probelint.disasm import insn_text

if TYPE_CHECKING:
    from probelint.checks import ProbeResult
    from probelint.findings import Verdict
    from probelint.image.kernel import Function, Kernel

__all__ = ["blocking_branches", "explain", "state"]


def state(v: Verdict) -> str:
    """The verdict in the words every view uses."""
    if not v.registers:
        return "refused: " + (v.errno or "?")
    if v.optimized is None:
        return "registers; optimization not checked"
    return "ftrace-based" if v.ftrace else "jump-optimized" if v.optimized else "int3 probe"


def blocking_branches(fn: Function, address: int) -> list[tuple[int, x86.Insn]]:
    """(target, insn) of the function's branches into P+1..P+5 (`insn_jump_into_range`, inclusive),
    each of which keeps a probe at P an int3 probe (KP206)."""
    return [(t, i) for t, i in fn.branches if address < t <= address + x86.JMP32_INSN_SIZE]


def explain(kernel: Kernel, result: ProbeResult, *, before: int = 6, after: int = 12) -> str:
    spec, v, ctx = result.spec, result.verdict, result.context
    lines = [f"{spec.text}: {state(v)}"]
    lines += [f"  {f.severity} [{f.rule}] {f.message}" for f in result.findings]
    if ctx is None or ctx.image is None or ctx.symbol is None or ctx.address is None:
        return "\n".join(lines) + "\n"
    image, sym, address = ctx.image, ctx.symbol, ctx.address
    fn = ctx.function()
    window = ctx.window() if v.registers and not v.ftrace else ()
    in_window = range(address, window[-1].end) if window else range(address, address + 1)
    hot = range(address + 1, address + x86.JMP32_INSN_SIZE + 1)  # insn_jump_into_range, inclusive
    sources = {insn.address for _, insn in blocking_branches(fn, address)}
    lines += ["", f"{sym.name} ({sym.size:#x} bytes, cpu profile {image.profile.value}; "
                  f"| jump window, > probe, * branch into P+1..P+5):"]
    inside = fn.insn_at_or_before(address)
    centre = fn.starts.index(inside.address) if inside is not None else 0
    shown = fn.insns[max(0, centre - before): centre + after + 1]
    for insn in shown:
        mark = ">" if insn.address == address else "|" if insn.address in in_window else " "
        mark += "*" if insn.address in sources else " "
        lines.append(f"  {mark} {image.describe(insn.address):<{len(sym.name) + 8}} "
                     f"{insn.raw.hex(' '):<29.29} {insn_text(image, insn)}")
    shown_at = {insn.address for insn in shown}
    for target, insn in fn.branches:
        if target in hot and insn.address not in shown_at:
            lines.append(f"  * {image.describe(insn.address)} {insn_text(image, insn)}")
    for piece in image.symbols.pieces_of(sym.name.split(".", 1)[0]):
        if piece.address == sym.address:
            continue
        for target, insn in image.function(piece).branches:
            if target in hot:
                lines.append(f"  * {image.describe(insn.address)} {insn_text(image, insn)}  "
                             f"(in {piece.name}: not checked by the kernel)")
    return "\n".join(lines) + "\n"
