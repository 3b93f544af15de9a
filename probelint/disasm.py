"""Disassembly excerpts for findings: a few instructions around a probe, the probe marked."""

from __future__ import annotations

import bisect
import re

from probelint.arch.x86 import decode as x86
from probelint.image.kernel import Function, Image

__all__ = ["excerpt", "insn_text"]


_ADDRESS = re.compile(r"0x[0-9a-f]{9,16}")


def excerpt(image: Image, fn: Function, address: int, *, before: int = 2, after: int = 3,
            marked: range | None = None) -> tuple[str, ...]:
    """Instructions around `address`; ``>`` marks those overlapping `marked` (default: the one at
    or containing `address`). Branch targets are shown as ``<SYM+0xOFF>``."""
    starts = fn.starts
    if not starts:
        return ()
    inside = fn.insn_at_or_before(address)
    centre = bisect.bisect_left(starts, inside.address) if inside is not None else 0
    lo, hi = max(0, centre - before), min(len(starts), centre + after + 1)
    if marked is None:
        marked = range(address, address + 1)
    lines = []
    width = len(fn.symbol.name) + 6
    for insn in fn.insns[lo:hi]:
        hit = insn.address < marked.stop and marked.start < insn.end
        raw = insn.raw.hex(" ")
        raw = raw if len(raw) <= 23 else raw[:20] + "..."
        text = insn_text(image, insn)
        where = f"{fn.symbol.name}+{insn.address - fn.symbol.address:#x}"
        lines.append(f"{'>' if hit else ' '} {where:<{width}}  {raw:<23}  {text}")
    return tuple(lines)


def insn_text(image: Image, insn: x86.Insn) -> str:
    """AT&T text with branch targets and RIP-relative addresses shown as ``<SYM+0xOFF>``."""
    return _ADDRESS.sub(lambda m: _symbolic(image, int(m.group(), 16)), x86.format_insn(insn))


def _symbolic(image: Image, address: int) -> str:
    where = image.describe(address)
    return f"{address:#x}" if where.startswith("0x") else f"<{where}>"
