"""``probelint map``: every instruction boundary of every function, classified by the same engine.

Each boundary is checked as a probe set of its own (`engine.check_probes`), so the map says
exactly what ``probelint`` says of a single probe there: ``O`` jump-optimized, ``F`` ftrace-based,
``I`` int3 probe (with the first reason it is not optimized), ``R`` refused (rule and errno).
Work is split over processes by function. The file is gzipped JSON lines, one function a line:
``{"f": name, "a": address, "s": size, "b": [[offset, class, rule], ...]}``, and
``probelint map --query SYM+OFF FILE`` reads it back.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probelint.image.kallsyms import KSym
    from probelint.image.kernel import Kernel

__all__ = ["classify_function", "map_kernel", "query", "summary"]

_KERNEL: Kernel | None = None  # inherited by forked workers


def classify_function(kernel: Kernel, sym: KSym) -> dict[str, Any]:
    from probelint.engine import check_alone
    from probelint.findings import Location
    from probelint.spec import ProbeSpec

    image = kernel.vmlinux
    assert image is not None
    fn = image.function(sym, every_insn=True)
    boundaries = []
    for insn in fn.insns:
        offset = insn.address - sym.address
        spec = ProbeSpec(f"{sym.name}+{offset:#x}", Location("<map>", 1, 1), False, None, None, 0, insn.address)
        v = check_alone(kernel, spec).verdict
        if not v.registers:
            boundaries.append([offset, "R", f"{v.reasons[0] if v.reasons else '?'}:{v.errno}"])
        elif v.ftrace:
            boundaries.append([offset, "F", ""])
        elif v.optimized:
            boundaries.append([offset, "O", ""])
        else:
            boundaries.append([offset, "I", v.reasons[0] if v.reasons else ""])
    return {"f": sym.name, "a": sym.address, "s": sym.size, "b": boundaries}


def _worker(syms: list[KSym]) -> list[dict[str, Any]]:
    assert _KERNEL is not None and _KERNEL.vmlinux is not None
    out = [classify_function(_KERNEL, sym) for sym in syms]
    _KERNEL.vmlinux.save_facts()  # a mapped kernel is warm for every later run
    return out


def map_kernel(kernel: Kernel, functions: Iterable[KSym], output: Path, jobs: int | None = None) -> Counter[str]:
    """Classify every boundary of `functions` (in parallel), write the map, return the counts."""
    global _KERNEL
    _KERNEL = kernel
    syms = list(functions)
    jobs = max(1, jobs or os.cpu_count() or 1)
    chunks = [syms[i::jobs * 8] for i in range(jobs * 8)] if len(syms) > 64 else [syms]
    counts: Counter[str] = Counter()
    records: list[dict[str, Any]] = []
    if jobs == 1 or len(chunks) == 1:
        results: Iterable[list[dict[str, Any]]] = map(_worker, chunks)
    else:
        pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))
        results = pool.map(_worker, chunks)
    for chunk in results:
        records += chunk
    records.sort(key=lambda r: r["a"])
    tmp = output.with_name(output.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            for _, cls, rule in record["b"]:
                counts[cls] += 1
                if rule:
                    counts[f"{cls} {rule}"] += 1
    os.replace(tmp, output)
    return counts


def summary(counts: Counter[str]) -> str:
    total = sum(counts[c] for c in "OFIR")
    names = {"O": "jump-optimized", "F": "ftrace-based", "I": "int3 probe", "R": "refused"}
    lines = [f"{total} instruction boundaries"]
    for cls in "OFIR":
        lines.append(f"  {names[cls]:15} {counts[cls]:9} {100 * counts[cls] / max(total, 1):5.1f} %")
        reasons = sorted(((n, k.split(" ", 1)[1]) for k, n in counts.items() if k.startswith(f"{cls} ")), reverse=True)
        lines += [f"      {rule:22} {n:9}" for n, rule in reasons[:6]]
    return "\n".join(lines) + "\n"


def query(path: Path, spec: str) -> str | None:
    """The class of ``SYM+OFF`` in a map file, or None if the map does not hold it."""
    name, _, off = spec.partition("+")
    offset = int(off, 0) if off else 0
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith(f'{{"f":{json.dumps(name)},'):
                continue
            record = json.loads(line)
            for boundary_offset, cls, rule in record["b"]:
                if boundary_offset == offset:
                    names = {"O": "jump-optimized", "F": "ftrace-based", "I": "int3 probe", "R": "refused"}
                    return f"{spec}: {names[cls]}" + (f" ({rule})" if rule else "")
            return f"{spec}: not an instruction boundary (refused: KP104:EILSEQ)"
    return None
