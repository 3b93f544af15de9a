#!/usr/bin/env python3
"""A module probe sample for `probelint vmtest` (docs/validation-modules.md): per module 12
random instruction boundaries, 3 jump-label sites (and a byte inside each), 2 static-call sites,
an .init.text and an .exit.text function; and names held by two loaded images, as plain SYM and
as MOD:SYM. The comment of each line is its vmtest category.

    python3 scripts/module_sample.py VMLINUX OUT.txt MODULE.ko...

The samples of docs/validation-modules.md were drawn with it. `probelint vmtest --sample N
--category module_jump_label ...` now draws the same kinds of probe from the modules it loads
(vmtest/sampler.py, the module_* categories); this script stays to reproduce those files.
"""

from __future__ import annotations

import collections
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probelint.image.kernel import Kernel, Module, load_kernel
from probelint.image.module_layout import is_init_section


def named_in(module: Module, address: int) -> str | None:
    return module.describe(address) if module.lookup(address) else None


def module_lines(kernel: Kernel, module: Module, rng: random.Random) -> list[str]:
    lo, hi = module.layout.text_start, module.layout.text_end
    funcs = [module.symbols.lookup(a) for a in module.symbols.addresses if lo <= a < hi]
    funcs = [s for s in funcs if s and s.type in "tT" and s.size > 5 and kernel.count(s.name) == 1]
    lines = []
    for sym in rng.sample(funcs, min(12, len(funcs))):
        insn = rng.choice(module.function(sym, every_insn=True).insns)
        lines.append(f"{module.describe(insn.address)}  # module")
    codes = [e["code"] for e in module.table("jump_table")]
    for code in rng.sample(codes, min(3, len(codes))):
        lines += [f"{where}  # {cat}" for delta, cat in ((0, "jump_label"), (1, "jump_label_inside"))
                  if (where := named_in(module, code + delta))]
    calls = [e["addr"] for e in module.table("static_call_sites")]
    lines += [f"{where}  # static_call" for addr in rng.sample(calls, min(2, len(calls)))
              if (where := named_in(module, addr))]
    sections = module.elf.sections

    def in_section(test) -> list[str]:
        return [s.name for s in module.elf.symbols() if 0 < s.shndx < len(sections) and s.name
                and not s.name.startswith(("__", ".")) and test(sections[s.shndx].name)]

    lines += [f"{module.name}:{name}  # init_text" for name in in_section(is_init_section)[:1]]
    exits = in_section(lambda sec: sec.startswith(".exit.text"))
    lines += [f"{module.name}:{name}  # module_entry exit text" for name in exits[:1]]
    return lines


def main() -> int:
    vmlinux, out, *kos = sys.argv[1:]
    kernel = load_kernel([vmlinux, *kos])
    rng = random.Random(18)
    lines = [line for module in kernel.modules for line in module_lines(kernel, module, rng)]
    holders = collections.defaultdict(list)
    for module in kernel.modules:
        lo, hi = module.layout.text_start, module.layout.text_end
        for address, name in zip(module.symbols.addresses, module.symbols.names, strict=True):
            if lo <= address < hi and not name.startswith("__"):
                holders[name].append(module.name)
    assert kernel.vmlinux is not None
    shared = sorted(n for n, mods in holders.items() if len(set(mods)) > 1 or kernel.vmlinux.symbols.count(n))
    for name in rng.sample(shared, min(8, len(shared))):
        lines += [f"{name}  # duplicate_name", f"{holders[name][0]}:{name}  # duplicate_name MOD:SYM"]
    Path(out).write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} probes in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
