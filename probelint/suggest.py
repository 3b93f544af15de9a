"""The fix a user wants: the nearest offsets in the same function where the probe would register,
or be jump-optimized, found by asking the same rules about the neighbouring instruction boundaries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probelint.findings import Fix

if TYPE_CHECKING:
    from probelint.checks import ProbeResult
    from probelint.image.kernel import Kernel

__all__ = ["add_hints"]

_REACH = 24  # boundaries tried on each side


def _neighbours(result: ProbeResult) -> list[int]:
    """Boundaries of the function, nearest first (the probe's own address excluded)."""
    ctx = result.context
    assert ctx is not None and ctx.address is not None
    starts = [a for a in ctx.function().starts if a != ctx.address]
    starts.sort(key=lambda a: (abs(a - ctx.address), a))
    return starts[: 2 * _REACH]


def _first(kernel: Kernel, result: ProbeResult, want_optimized: bool,
           neighbours: dict[str, bool] | None = None) -> tuple[str, str] | None:
    """The nearest boundary that registers (and is optimized), checked together with `neighbours`
    (the other probes of the set close enough to interfere, with their optimized state, which a
    good move must not take away)."""
    neighbours = neighbours or {}
    from probelint.engine import check_probes
    from probelint.readers.spec import parse_text

    ctx = result.context
    assert ctx is not None and ctx.image is not None
    for address in _neighbours(result):
        where = ctx.image.describe(address)
        if where in neighbours:
            continue
        checked = check_probes(kernel, list(parse_text("\n".join([where, *neighbours]), "<hint>")))
        verdict = checked[0].verdict
        kept = all(r.verdict.optimized or not was for r, was in zip(checked[1:], neighbours.values(), strict=True))
        if verdict.registers and (verdict.optimized or not want_optimized) and kept:
            kind = "optimized" if verdict.optimized else "ftrace-based" if verdict.ftrace else "int3"
            return where, kind
    return None


def _close_probes(result: ProbeResult, results: list[ProbeResult]) -> dict[str, bool]:
    """The other probes of the set within a jump window's reach (19 bytes) of this one."""
    ctx = result.context
    assert ctx is not None and ctx.address is not None
    out = {}
    for other in results:
        o = other.context
        if other is result or o is None or o.image is not ctx.image or o.address is None:
            continue
        if abs(o.address - ctx.address) <= 19 and other.verdict.registers:
            out[o.image.describe(o.address)] = other.verdict.optimized
    return out


def _move_out_of_window(inner: ProbeResult, results: list[ProbeResult]) -> str | None:
    """For a probe inside another's jump window: the nearest boundary at or past that window's end."""
    ctx = inner.context
    assert ctx is not None and ctx.address is not None and ctx.image is not None
    ends = []
    for other in results:
        o = other.context
        if o is None or o.image is not ctx.image or o.address is None or "KP301" not in other.verdict.reasons:
            continue
        window = o.window()
        if window and o.address < ctx.address < window[-1].end:
            ends.append(window[-1].end)
    if not ends:
        return None
    end = max(ends)
    after = next((a for a in ctx.function().starts if a >= end), None)
    if after is None:
        return None
    return f"fix: {ctx.image.describe(after)} is the nearest boundary past that window ({ctx.image.describe(end)})"


def add_hints(kernel: Kernel, results: list[ProbeResult]) -> None:
    """Append a ``fix:`` note to the first finding of each refused or unoptimized probe."""

    for result in results:
        ctx = result.context
        if ctx is None or ctx.symbol is None or ctx.address is None or not result.findings or ctx.spec.is_return:
            continue
        verdict = result.verdict
        move: str | None = None
        if not verdict.registers and verdict.errno in ("EILSEQ", "EINVAL", "EOPNOTSUPP", "ENOSPC"):
            hint = _first(kernel, result, False)
            text = f"fix: the nearest offset that registers is {hint[0]} ({hint[1]})" if hint else None
            move = hint[0] if hint else None
        elif verdict.registers and not verdict.optimized and not verdict.ftrace and verdict.reasons:
            hint = _first(kernel, result, True, _close_probes(result, results))
            text = f"fix: the nearest offset that would be jump-optimized is {hint[0]} ({hint[1]})" if hint else None
            move = hint[0] if hint else None
        elif any(f.rule == "KP302" for f in result.findings):
            text = _move_out_of_window(result, results)
        else:
            continue
        if text:  # on the finding that decided the verdict
            deciding = next((i for i, f in enumerate(result.findings) if f.rule in verdict.reasons), 0)
            finding = result.findings[deciding]
            fix = finding.fix
            if fix is None and move is not None:
                fix = Fix(move + ("%return" if ctx.spec.is_return else ""), False, f"move the probe to {move}")
            result.findings[deciding] = finding._replace(notes=(*finding.notes, text), fix=fix)
