#!/usr/bin/env python3
"""Compare probelint's resolution of perf source-line probes with `perf probe -D` itself.

    python3 scripts/compare_perf_lines.py VMLINUX [--count 300] [--seed 1] [--jobs 2]

Draws a seeded sample of probe points from the image's own DWARF: FILE:LINE in .c files,
FUNC:RLN, FUNC@FILE:RLN, lines of functions inlined in their .c file, header lines, FUNC@FILE and
lines with no code. For each, runs `perf probe -k VMLINUX -D SPEC` (offline: nothing is
registered; one spec per run, because one failing spec fails the whole run and the output does
not say which spec an event comes from) and compares the SYM+OFF set with probelint's. perf
failing and probelint reporting an error both count as agreement; points probelint declines
(KP407) are counted apart. Figures go in docs/source-lines.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import probelint
from probelint.image.kernel import Kernel
from probelint.readers.perf_lines import DwarfLines, PerfPoint, Resolution


@dataclass
class Report:
    checked: int = 0
    agree: int = 0
    declined: list[str] = field(default_factory=list)  # probelint says "not checked" (KP407)
    disagree: list[str] = field(default_factory=list)
    by_form: dict[str, list[int]] = field(default_factory=dict)  # form -> [checked, agree]

    def describe(self) -> str:
        lines = [f"{self.agree}/{self.checked} agree ({100 * self.agree / max(self.checked, 1):.1f}%), "
                 f"{len(self.declined)} declined by probelint (not checked)"]
        lines += [f"  {form}: {agree}/{n}" for form, (n, agree) in sorted(self.by_form.items())]
        lines += ["disagree:", *(f"  {d}" for d in self.disagree)] if self.disagree else []
        lines += ["declined:", *(f"  {d}" for d in self.declined[:20])] if self.declined else []
        return "\n".join(lines)


def spelling(point: PerfPoint) -> str:
    if point.function is None:
        return f"{point.file}:{point.line}"
    text = point.function + (f"@{point.file}" if point.file else "")
    return text + (f":{point.line}" if point.line else "") + (f"+{point.offset}" if point.offset else "")


def sample(kernel: Kernel, lines: DwarfLines, count: int, seed: int) -> list[tuple[str, PerfPoint]]:
    """(form, point) pairs drawn from the DWARF of randomly chosen functions' units."""
    rng = random.Random(seed)
    image = kernel.vmlinux
    assert image is not None
    stext, etext = image.marker("_stext") or 0, image.marker("_etext") or 0
    funcs = [s for s in image.symbols.symbols_in(stext, etext) if s.type in "tT" and "." not in s.name and s.size > 16]
    rng.shuffle(funcs)
    aranges = lines.dwarf.info.get_aranges()
    out: list[tuple[str, PerfPoint]] = []
    for sym in funcs:
        if len(out) >= count:
            break
        offset = aranges.cu_offset_at_addr(sym.address) if aranges else None
        if offset is None:
            continue
        unit = lines.dwarf.unit(offset)
        sp = unit.realfunc(sym.address)
        if sp is None or unit.name(sp) != sym.name:
            continue
        decl_file, decl_line = unit.decl_file(sp), unit.decl_line(sp) or 0
        rows = [r for r in unit.rows if sym.address <= r[0] < sym.end and r[4] and not r[1] and r[3]]
        if not rows or not decl_file or not decl_file.endswith(".c"):
            continue
        own = [r for r in rows if r[3] == decl_file and r[2] > decl_line]
        inlined = [r for r in rows if r[3] == decl_file and r[2] < decl_line]  # a static helper inlined here
        headers = [r for r in rows if r[3].endswith(".h")]
        picks: list[tuple[str, PerfPoint]] = []
        if own:
            row = rng.choice(own)
            picks.append(("FILE:LINE", PerfPoint(None, decl_file, row[2])))
            row = rng.choice(own)
            picks.append(("FUNC:RLN", PerfPoint(sym.name, None, row[2] - decl_line)))
            row = rng.choice(own)
            picks.append(("FUNC@FILE:RLN", PerfPoint(sym.name, decl_file, row[2] - decl_line)))
            picks.append(("no code", PerfPoint(None, decl_file, max(r[2] for r in own) + rng.randint(200, 400))))
        if inlined:
            picks.append(("inlined FILE:LINE", PerfPoint(None, decl_file, rng.choice(inlined)[2])))
        if headers and rng.random() < 0.15:
            picks.append(("header FILE:LINE", PerfPoint(None, rng.choice(headers)[3], rng.choice(headers)[2])))
        if rng.random() < 0.3:
            picks.append(("FUNC@FILE", PerfPoint(sym.name, decl_file)))
        out += picks
    return out[:count]


def run_perf(vmlinux: Path, spec: str) -> tuple[list[str], str]:
    """perf's SYM+OFF list for one spec, or its error (stderr's first line)."""
    proc = subprocess.run(["perf", "probe", "-k", str(vmlinux), "-q", "-D", spec], capture_output=True, text=True,
                          timeout=300)
    found = re.findall(r"^[pr]:\S+ (\S+)", proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        return [], (proc.stderr.strip().splitlines() or ["perf failed"])[0]
    return found, ""


def named(kernel: Kernel, resolution: Resolution) -> list[str]:
    image = kernel.vmlinux
    assert image is not None
    out = []
    for address in resolution.addresses:
        sym = image.symbols.lookup(address)
        out.append(f"{sym.name}+{address - sym.address}" if sym else hex(address))
    return out


def compare(kernel: Kernel, vmlinux: Path, count: int = 300, seed: int = 1, jobs: int = 2) -> Report:
    lines = DwarfLines(kernel.vmlinux)
    points = sample(kernel, lines, count, seed)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        perf = list(pool.map(lambda p: run_perf(vmlinux, spelling(p[1])), points))
    report = Report()
    for (form, point), (theirs, error) in zip(points, perf, strict=True):
        mine = lines.resolve(point)
        text = spelling(point)
        if mine.unsupported:
            report.declined.append(f"{text}: {mine.error}")
            continue
        report.checked += 1
        tally = report.by_form.setdefault(form, [0, 0])
        tally[0] += 1
        ours = named(kernel, mine)
        if (mine.error is not None and not theirs) or (mine.error is None and sorted(ours) == sorted(theirs)):
            report.agree += 1
            tally[1] += 1
        else:
            report.disagree.append(f"{text} ({form}): perf {theirs or error!r}, probelint {ours or mine.error!r}")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vmlinux", type=Path)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    start = time.monotonic()
    kernel = probelint.load_kernel([args.vmlinux], cache=True)
    report = compare(kernel, args.vmlinux, args.count, args.seed, args.jobs)
    print(report.describe())
    print(f"{time.monotonic() - start:.0f} s")
    return 0 if not report.disagree else 1


if __name__ == "__main__":
    sys.exit(main())
