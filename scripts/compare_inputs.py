"""Do the verdicts from a vmlinuz and its symbols (a System.map, a kallsyms dump) equal those from
the -dbg vmlinux? Every instruction boundary of sampled functions is checked alone through each
input kind (probemap.check_boundaries) and compared: verdict, errno, reasons, findings.

    python3 scripts/compare_inputs.py VMLINUX VMLINUZ SYSTEM_MAP [--kallsyms DUMP] [-n 300] [--seed 1]

Without --kallsyms, a dump is made from the -dbg vmlinux's kallsyms as /proc/kallsyms lists it
(per-CPU symbols absolute, type A) with a KASLR slide added.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probelint.image.kernel import Kernel, load_kernel
from probelint.probemap import check_boundaries

SLIDE = 0x2A00000  # a KASLR slide (a multiple of the 2 MiB alignment)
KERNEL_SPACE = 0xFFFF800000000000


def kallsyms_dump(kernel: Kernel, slide: int = SLIDE) -> str:
    """The vmlinux part of /proc/kallsyms of this kernel booted with `slide`."""
    assert kernel.vmlinux is not None
    syms = kernel.vmlinux.symbols
    lines = []
    for address, name, letter in zip(syms.addresses, syms.names, syms.types, strict=True):
        if address < KERNEL_SPACE:
            lines.append(f"{address:016x} A {name}")  # make_percpu_absolute: never relocated
        else:
            lines.append(f"{address + slide:016x} {letter} {name}")
    return "\n".join(lines) + "\n"


def sample(kernel: Kernel, count: int, seed: int) -> list[str]:
    """`count` functions of core text, by name (unique names: each kind looks them up by name)."""
    image = kernel.vmlinux
    assert image is not None
    stext, etext = image.marker("_stext"), image.marker("_etext")
    syms = [s for s in image.symbols.symbols_in(stext or 0, etext or 0)
            if s.type in "tT" and image.symbols.count(s.name) == 1 and 0 < s.size < 4096]
    return sorted(s.name for s in random.Random(seed).sample(syms, min(count, len(syms))))


def verdicts(kernel: Kernel, names: list[str]) -> dict[str, list[tuple]]:
    out = {}
    for name in names:
        found = kernel.lookup_name(name)
        assert found is not None, name
        _, sym = found
        out[name] = [(offset, r.verdict.registers, r.verdict.errno, r.verdict.optimized, r.verdict.ftrace,
                      tuple(r.verdict.reasons), tuple(sorted(f.rule for f in r.findings)))
                     for offset, r in check_boundaries(kernel, sym, findings=True)]
    return out


def compare(reference: dict[str, list[tuple]], other: dict[str, list[tuple]]) -> tuple[int, int, list[str]]:
    """(boundaries, boundaries equal, functions that differ)."""
    total = equal = 0
    differ = []
    for name, ref in reference.items():
        got = dict((b[0], b) for b in other[name])
        total += len(ref)
        same = sum(got.get(b[0]) == b for b in ref)
        equal += same
        if same != len(ref) or len(got) != len(ref):
            differ.append(name)
    return total, equal, differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vmlinux")
    parser.add_argument("vmlinuz")
    parser.add_argument("system_map")
    parser.add_argument("--kallsyms", help="a real /proc/kallsyms dump of this kernel")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cpu-profile", default=None)
    args = parser.parse_args()
    start = time.monotonic()
    reference_kernel = load_kernel([args.vmlinux], profile=args.cpu_profile)
    names = sample(reference_kernel, args.n, args.seed)
    reference = verdicts(reference_kernel, names)
    print(f"{len(names)} functions, {sum(map(len, reference.values()))} boundaries "
          f"(-dbg vmlinux: {time.monotonic() - start:.1f} s)")
    dump = args.kallsyms
    if dump is None:
        with tempfile.NamedTemporaryFile("w", suffix=".kallsyms", delete=False) as fh:
            fh.write(kallsyms_dump(reference_kernel))
            dump = fh.name
    failed = False
    for label, symbols in (("System.map", args.system_map), ("kallsyms dump", dump)):
        start = time.monotonic()
        kernel = load_kernel([args.vmlinuz, symbols], profile=args.cpu_profile)
        total, equal, differ = compare(reference, verdicts(kernel, names))
        config = list(kernel.config.describe()) == list(reference_kernel.config.describe())
        print(f"vmlinuz + {label}: {equal}/{total} boundaries equal, {len(differ)} functions differ "
              f"{differ[:10]}, inferred build options {'equal' if config else 'DIFFER'} "
              f"({time.monotonic() - start:.1f} s)")
        failed |= equal != total or not config
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
