"""``probelint map``: every instruction boundary of every function, classified by the same engine.

Each boundary is checked as a probe set of its own (`engine.check_probes`), so the map says
exactly what ``probelint`` says of a single probe there: ``O`` jump-optimized, ``F`` ftrace-based,
``I`` int3 probe (with the first reason it is not optimized), ``R`` refused (rule and errno); and
for a module checked without its vmlinux, ``U`` registers but its optimization is not checked and
``N`` not checked (KP412).
Work is split over processes by function. The file is gzipped JSON lines, one function a line:
``{"f": name, "a": address, "s": size, "b": [[offset, class, rule], ...]}``, and
``probelint map --query SYM+OFF FILE`` reads it back.
"""

from __future__ import annotations

import concurrent.futures
import gc
import gzip
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probelint.fileio import open_regular, replacing

if TYPE_CHECKING:
    from probelint.checks import ProbeResult
    from probelint.findings import Verdict
    from probelint.image.kallsyms import KSym
    from probelint.image.kernel import Image, Kernel

__all__ = ["boundary_class", "check_boundaries", "classify_function", "map_kernel", "query", "summary"]

_KERNEL: Kernel | None = None  # inherited by forked workers
_IMAGE: Image | None = None  # the image mapped: the vmlinux or a module


def check_boundaries(kernel: Kernel, sym: KSym, *, findings: bool = False,
                     image: Image | None = None) -> Iterator[tuple[int, ProbeResult]]:
    """(offset, result) of a probe ``SYM+OFF`` alone at every instruction boundary of `sym`, a
    function of `image` (default: the vmlinux; a module's as ``MOD:SYM+OFF``)."""
    from probelint.engine import check_alone
    from probelint.findings import Location
    from probelint.readers.spec import ProbeSpec

    image = image or kernel.vmlinux
    assert image is not None
    prefix = f"{image.name}:" if image.is_module else ""
    for insn in image.function(sym, every_insn=True).insns:
        offset = insn.address - sym.address
        # by address: a name kallsyms holds twice would resolve to its first holder
        spec = ProbeSpec(f"{prefix}{sym.name}+{offset:#x}", Location("<map>", 1, 1), False, None, None, 0,
                         insn.address)
        yield offset, check_alone(kernel, spec, findings=findings)


# Class letters as the map stores them; U and N (a module without its vmlinux) are listed only
# where there are some, so a vmlinux's summary reads as it always did.
CLASS_NAMES = {"O": "jump-optimized", "F": "ftrace-based", "I": "int3 probe", "U": "optimization not checked",
               "R": "refused", "N": "not checked"}


def boundary_class(v: Verdict) -> tuple[str, str]:
    """The map's class of a verdict (CLASS_NAMES) and its reason (``RULE`` or ``RULE:ERRNO``)."""
    if v.registers is None:
        return "N", v.reasons[0] if v.reasons else ""
    if not v.registers:
        return "R", f"{v.reasons[0] if v.reasons else '?'}:{v.errno}"
    if v.ftrace:
        return "F", ""
    if v.optimized is None:
        return "U", v.reasons[0] if v.reasons else ""
    if v.optimized:
        return "O", ""
    return "I", v.reasons[0] if v.reasons else ""


def classify_function(kernel: Kernel, sym: KSym, image: Image | None = None) -> dict[str, Any]:
    boundaries = [[offset, *boundary_class(result.verdict)]
                  for offset, result in check_boundaries(kernel, sym, image=image)]
    return {"f": sym.name, "a": sym.address, "s": sym.size, "b": boundaries}


def _worker(syms: list[KSym]) -> tuple[bytes, Counter[str]]:
    """A run of functions classified, as one gzip member of the map, and its counts: workers
    compress in parallel and the parent only concatenates (gzip readers take several members)."""
    assert _KERNEL is not None and _IMAGE is not None
    counts: Counter[str] = Counter()
    lines = []
    for sym in syms:
        record = classify_function(_KERNEL, sym, _IMAGE)
        lines.append(json.dumps(record, separators=(",", ":")) + "\n")
        for _, cls, rule in record["b"]:
            counts[cls] += 1
            if rule:
                counts[f"{cls} {rule}"] += 1
    _IMAGE.save_facts()  # a mapped kernel is warm for every later run
    _IMAGE.forget_functions()  # each function is mapped once: keep memory flat
    return gzip.compress("".join(lines).encode(), compresslevel=6), counts  # 9 costs 3x the time for 1 %


def map_kernel(kernel: Kernel, functions: Iterable[KSym], output: Path, jobs: int | None = None,
               image: Image | None = None) -> Counter[str]:
    """Classify every boundary of `functions` of `image` (default: the vmlinux) in parallel, write
    the map, return the counts."""
    global _KERNEL, _IMAGE
    _KERNEL, _IMAGE = kernel, image or kernel.vmlinux
    syms = sorted(functions, key=lambda sym: sym.address)
    jobs = max(1, jobs or os.cpu_count() or 1)
    # Contiguous runs, so the members come out in address order; many of them, to balance the load.
    size = max(1, -(-len(syms) // (jobs * 32)))
    chunks = [syms[i : i + size] for i in range(0, len(syms), size)]
    counts: Counter[str] = Counter()
    pool = None
    if jobs == 1 or len(chunks) == 1:
        results: Iterable[tuple[bytes, Counter[str]]] = map(_worker, chunks)
    else:
        gc.freeze()  # the collector then leaves the inherited objects alone: fewer copy-on-write pages
        pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))
        results = pool.map(_worker, chunks)
    try:
        with replacing(output) as fh:  # never through a link planted at a fixed temporary name
            for member, chunk_counts in results:
                fh.write(member)
                counts.update(chunk_counts)
    finally:
        # shut down here, not by the interpreter's exit handlers: their teardown of the pool's
        # management thread printed a stray threading traceback now and then
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return counts


def summary(counts: Counter[str]) -> str:
    total = sum(counts[c] for c in CLASS_NAMES)
    lines = [f"{total} instruction boundaries"]
    shown = [cls for cls in CLASS_NAMES if counts[cls] or cls not in "UN"]
    width = max(15, *(len(CLASS_NAMES[cls]) for cls in shown))
    for cls in shown:
        lines.append(f"  {CLASS_NAMES[cls]:{width}} {counts[cls]:9} {100 * counts[cls] / max(total, 1):5.1f} %")
        reasons = sorted(((n, k.split(" ", 1)[1]) for k, n in counts.items() if k.startswith(f"{cls} ")), reverse=True)
        lines += [f"      {rule:22} {n:9}" for n, rule in reasons[:6]]
    return "\n".join(lines) + "\n"


# A whole Debian 6.1 kernel's map: 50 MB of JSON in ~40k lines, none over 1 MB. A file past these
# is no map (a gzip bomb is refused before it fills memory or takes minutes line by line).
MAX_MAP_BYTES = 512 << 20
MAX_MAP_LINES = 1 << 20
MAX_MAP_LINE = 16 << 20


def query(path: Path, spec: str) -> str | None:
    """The class of ``SYM+OFF`` in a map file, or None if the map does not hold it. A file
    beyond a map's size (`MAX_MAP_BYTES`, `MAX_MAP_LINES`, `MAX_MAP_LINE`) is a ValueError."""
    name, _, off = spec.partition("+")
    offset = int(off, 0) if off else 0
    size = 0
    with open_regular(path) as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:  # a FIFO: one line
        for count in range(MAX_MAP_LINES + 1):
            try:
                line = fh.readline(MAX_MAP_LINE)
            except EOFError as exc:  # a truncated gzip stream
                raise ValueError(str(exc)) from None
            size += len(line)
            if not line:
                break
            too_long = len(line) == MAX_MAP_LINE and not line.endswith("\n")
            if count == MAX_MAP_LINES or size > MAX_MAP_BYTES or too_long:
                raise ValueError(f"larger than a map ({MAX_MAP_LINES} lines, {MAX_MAP_BYTES >> 20} MiB, "
                                 f"{MAX_MAP_LINE >> 20} MiB a line)")
            if not line.startswith(f'{{"f":{json.dumps(name)},'):
                continue
            record = json.loads(line)
            for boundary_offset, cls, rule in record["b"]:
                if boundary_offset == offset:
                    return f"{spec}: {CLASS_NAMES[cls]}" + (f" ({rule})" if rule else "")
            return f"{spec}: not an instruction boundary (refused: KP104:EILSEQ)"
    return None
