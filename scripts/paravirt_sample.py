#!/usr/bin/env python3
"""Probes at the paravirt call sites of modules (docs/validation-modules.md, "Paravirt sites,
generic 6.1"): per module N sites of `.parainstructions` in core text drawn at random (seed 18, at
most 2 per function while the module has enough), each probed at the site (+0), inside it (+1, +2,
+5: the byte after a 5-byte patched call) and at the instruction after it (+len). The comment of
each line is its vmtest category, the site, and where the probe is in it.

    python3 scripts/paravirt_sample.py VMLINUX OUT.txt MODULE.ko[:N]...   # N: sites (default 7)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probelint.image.kernel import Module, load_kernel

_WHERE = {0: ("paravirt", "at"), 1: ("mid_insn", "inside+1"), 2: ("mid_insn", "inside+2"), 5: ("mid_insn", "inside+5")}


def module_lines(module: Module, want: int, rng: random.Random) -> list[str]:
    sites = []
    for e in module.table("parainstructions"):
        sec, sym = module.section_at(e["instr"]), module.lookup(e["instr"])
        if sec is None or sym is None or not module.is_core_text(e["instr"]) or sec.name.startswith((".init", ".exit")):
            continue
        sites.append((e["instr"], e["len"], sym))
    rng.shuffle(sites)
    per_fn: dict[str, int] = {}
    chosen = []
    for site in sites:
        if per_fn.get(site[2].name, 0) < 2:
            per_fn[site[2].name] = per_fn.get(site[2].name, 0) + 1
            chosen.append(site)
            if len(chosen) == want:
                break
    chosen += [s for s in sites if s not in chosen][: want - len(chosen)]  # functions with few sites: fill up
    lines = [f"# {module.name}: {len(chosen)} of {len(sites)} sites"]
    seen = set()
    for addr, length, sym in sorted(chosen, key=lambda s: s[0]):
        for delta in (0, 1, 2, 5, length):
            at = addr + delta
            there = module.lookup(at)
            if at in seen or there is None or at >= there.end:
                continue
            seen.add(at)
            cat, note = ("boundary", "after") if delta == length else _WHERE[delta]
            lines.append(f"{module.name}:{there.name}+{at - there.address:#x}  "
                         f"# {cat} [{module.name}:{sym.name}+{addr - sym.address:#x}] {note}")
    return lines


def main(argv: list[str]) -> None:
    vmlinux, out, *mods = argv
    wanted = [(path, int(n) if n else 7) for path, _, n in (m.partition(":") for m in mods)]
    kernel = load_kernel([vmlinux, *(path for path, _ in wanted)])
    rng = random.Random(18)
    lines = ["# Probes at paravirt call sites (.parainstructions): each site at it (+0), inside it (+1, +2, +5)",
             "# and the instruction after it (+len); sites drawn at random (seed 18) in core text, at most 2",
             "# per function where the module has enough. scripts/paravirt_sample.py, docs/validation-modules.md."]
    for module, (_, want) in zip(kernel.modules, wanted, strict=True):
        lines += module_lines(module, want, rng)
    Path(out).write_text("\n".join(lines) + "\n")
    print(f"{sum(not line.startswith('#') for line in lines)} probes -> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
