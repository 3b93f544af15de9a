"""Probe interaction against a booted kernel: pairs of probes through an optimized jump window.

For each pair (A, B) in one function, A optimizable on its own and B either strictly inside A's
jump window (`inside`) or on the first boundary after it (`outside`, the control), the kernel
registers the pairs in three ways, one boot each: A then B (each phase enabled and settled
before the next), B then A, and both at once. The kernel's final `[OPTIMIZED]` state of A and of
B is compared with probelint's verdict for the same probe set (kernel/kprobes.c
`get_optimized_kprobe`, arch/x86/kernel/kprobes/opt.c `arch_check_optimized_kprobe`; probelint
rules KP301/KP302). Pairs sit in different functions, so pairs do not interact with each other.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import probelint

from .runner import DEFAULT_KERNEL_PACKAGE, run_probes
from .vm import DEFAULT_CPU

if TYPE_CHECKING:
    from probelint.image.kernel import Kernel

__all__ = ["ORDERS", "Pair", "PairOutcome", "draw_pairs", "render_pairs", "run_pairs"]

ORDERS = ("A then B", "B then A", "together")


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    kind: str  # "inside" (B in A's window) or "outside" (B just past it)


@dataclass
class PairOutcome:
    pair: Pair
    order: str
    kernel_a: bool  # [OPTIMIZED] at the end
    kernel_b: bool
    probelint_a: bool
    probelint_b: bool
    kernel_text: str = ""

    @property
    def agrees(self) -> bool:
        return (self.kernel_a, self.kernel_b) == (self.probelint_a, self.probelint_b)


def draw_pairs(kernel: Kernel, n: int, seed: int = 0) -> list[Pair]:
    """About n pairs (half inside, half outside), one per function, A optimizable alone."""
    image = kernel.vmlinux
    assert image is not None
    rng = random.Random(seed)
    stext, etext = image.marker("_stext"), image.marker("_etext")
    functions = [s for s in image.symbols.symbols_in(stext, etext) if s.type in "tT" and s.size > 32]
    rng.shuffle(functions)
    pairs: list[Pair] = []
    for sym in functions:
        if len(pairs) >= n:
            break
        kind = "inside" if len(pairs) % 2 == 0 else "outside"
        starts = image.function(sym).starts[1:]
        if len(starts) < 4:
            continue
        a = rng.choice(starts[:-3])
        (alone,) = probelint.check(kernel, [f"{sym.name}+{a - sym.address:#x}"], hints="never")
        if not alone.verdict.optimized or alone.context is None:
            continue
        window = alone.context.window()
        end = window[-1].end
        inside = [s for s in starts if a < s < end]
        after = [s for s in starts if s >= end]
        b = (inside[0] if inside else None) if kind == "inside" else (after[0] if after else None)
        if b is None or kernel.count(sym.name) != 1:
            continue
        pairs.append(Pair(f"{sym.name}+{a - sym.address:#x}", f"{sym.name}+{b - sym.address:#x}", kind))
    return pairs


def run_pairs(pairs: list[Pair], kernel: Kernel, *, kernel_package: str = DEFAULT_KERNEL_PACKAGE,
              cpu: str = DEFAULT_CPU, log: Callable[[str], None] | None = None) -> list[PairOutcome]:
    from .compare import profile_for

    specs = [p.a for p in pairs] + [p.b for p in pairs]
    n = len(pairs)
    a_idx, b_idx = list(range(n)), list(range(n, 2 * n))
    kernel = kernel.with_profile(profile_for(cpu))  # the boot-time patching this CPU model gets
    predicted = probelint.check(kernel, specs, hints="never")
    phases_by_order = {"A then B": [a_idx, b_idx], "B then A": [b_idx, a_idx], "together": [a_idx + b_idx]}
    out = []
    for order in ORDERS:
        if log:
            log(f"pairs: {order} ({n} pairs, cpu {cpu})")
        verdicts = run_probes(specs, kernel_package=kernel_package, cpu=cpu, phases=phases_by_order[order],
                              batch_size=len(specs))
        for i, pair in enumerate(pairs):
            ka, kb = verdicts[i], verdicts[n + i]
            out.append(PairOutcome(pair, order, ka.optimized, kb.optimized, predicted[i].verdict.optimized,
                                   predicted[n + i].verdict.optimized,
                                   f"A {ka.flags or ka.errno or 'int3'}, B {kb.flags or kb.errno or 'int3'}"))
    return out


def render_pairs(outcomes: list[PairOutcome]) -> str:
    lines = ["| pair kind | order | pairs | both agree | kernel: A optimized | kernel: B optimized |",
             "|---|---|---:|---:|---:|---:|"]
    for kind in ("inside", "outside"):
        for order in ORDERS:
            group = [o for o in outcomes if o.pair.kind == kind and o.order == order]
            if not group:
                continue
            agree = sum(o.agrees for o in group)
            lines.append(f"| {kind} | {order} | {len(group)} | {agree}/{len(group)} | "
                         f"{sum(o.kernel_a for o in group)} | {sum(o.kernel_b for o in group)} |")
    wrong = [o for o in outcomes if not o.agrees]
    if wrong:
        lines += ["", "Disagreements:", ""]
        lines += [f"- `{o.pair.a}` / `{o.pair.b}` ({o.pair.kind}, {o.order}): kernel {o.kernel_text}; "
                  f"probelint A {'OPTIMIZED' if o.probelint_a else 'int3'}, "
                  f"B {'OPTIMIZED' if o.probelint_b else 'int3'}" for o in wrong]
    return "\n".join(lines) + "\n"
