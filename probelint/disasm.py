"""Disassembly excerpts for findings: a few instructions around a probe, the probe marked."""

from __future__ import annotations

from probelint.arch import x86
from probelint.image.kernel import Function

__all__ = ["excerpt"]


def excerpt(fn: Function, address: int, *, before: int = 2, after: int = 3,
            marked: range | None = None) -> tuple[str, ...]:
    """Instructions around `address`; ``>`` marks those overlapping `marked` (default: the one at
    or containing `address`)."""
    starts = fn.starts
    if not starts:
        return ()
    inside = fn.insn_at_or_before(address)
    centre = starts.index(inside.address) if inside is not None else 0
    lo, hi = max(0, centre - before), min(len(starts), centre + after + 1)
    if marked is None:
        marked = range(address, address + 1)
    lines = []
    for insn in fn.insns[lo:hi]:
        hit = insn.address < marked.stop and marked.start < insn.end
        raw = insn.raw.hex(" ")
        raw = raw if len(raw) <= 23 else raw[:20] + "..."
        lines.append(f"{'>' if hit else ' '} {fn.symbol.name}+{insn.address - fn.symbol.address:#x}"
                     f"  {raw:<23}  {x86.format_insn(insn)}")
    return tuple(lines)
