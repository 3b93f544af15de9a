#!/usr/bin/env python3
"""Benchmark probelint against binutils on one kernel image, in one run on one machine.

    python3 scripts/benchmark.py [VMLINUX] [--module KO] [--repeat 3]

Times (median of --repeat runs, wall clock) and peak RSS of: `nm -n`, `objdump -d -j .text`,
probelint cold (no index yet), warm (index, the probed functions' decode facts and the probes'
stored results present: the pre-commit case, the same probe file again), warm with the results not
stored (every probe checked again on warm facts) and "warm index, new probes" (functions never seen
before) with 10, 1,000 and 10,000 probes drawn from the image's instruction boundaries, and prints
ratios against the binutils baselines. Module rows: the vmlinux with a module (default xfs.ko of the
same -dbg package), cold and warm with 1,000 ``MOD:SYM+OFF`` probes and warm with one. The
default image is the Debian 6.1 cloud vmlinux (downloaded into the cache if needed). Figures go in
docs/performance.md; they are never asserted in tests (machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, not an installed copy

import probelint
from probelint.image.kernel import Image, Module

SIZES = (10, 1_000, 10_000)


ROOT = Path(__file__).resolve().parent.parent
# Every command runs in an empty directory (a probelint.toml or pyproject.toml in the caller's
# directory would be read as the run's configuration) with this checkout first on the path.
WORKDIR: str | None = None  # set by main: an empty directory of its own
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def measure(cmd: list[str], *, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of `cmd` (output discarded)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env or ENV,
                            cwd=WORKDIR)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss


NEIGHBOUR: list[str] = []  # set by main: `nm -n` on the image, run beside every measured run


def median_run(cmd: list[str], repeat: int, *, before: list[str] | None = None,
               env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Median wall seconds and peak RSS of `cmd` over `repeat` runs, and the median of `nm -n`
    run just before each of them: a shared machine's load changes over minutes, and a ratio
    against an `nm -n` timed at the start would carry that drift."""
    times, beside, rss = [], [], 0
    for _ in range(repeat):
        if NEIGHBOUR:
            beside.append(measure(NEIGHBOUR)[0])
        if before:
            subprocess.run(before, check=True)
        t, r = measure(cmd, env=env)
        times.append(t)
        rss = max(rss, r)
    return statistics.median(times), rss, statistics.median(beside) if beside else statistics.median(times)


def user_interpreter(work: Path) -> str:
    """A venv's python3 that sees this interpreter's packages but runs none of its site-packages'
    ``.pth`` start-up hooks (a CI sandbox's CA-injection hook imports certifi, ~20 ms of every
    start): the interpreter a user gets from the README's ``pip install .`` into a venv."""
    import site
    import sysconfig

    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # A path line of a .pth is added to sys.path; the .pth files in that path are not executed.
    (purelib / "base-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return str(venv / "bin" / "python3")


def sample_probes(image: Image, count: int, seed: int = 1) -> list[str]:
    """`count` instruction boundaries of the image's core text (``MOD:SYM+OFF`` in a module)."""
    if isinstance(image, Module):
        stext, etext = image.layout.text_start, image.layout.text_end
    else:
        stext, etext = image.marker("_stext"), image.marker("_etext")
    funcs = [s for s in image.symbols.symbols_in(stext, etext) if s.type in "tT" and s.size > 5]
    prefix = f"{image.name}:" if image.is_module else ""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        sym = rng.choice(funcs)
        insns = image.function(sym).insns
        insn = rng.choice(insns)
        out.append(f"{prefix}{sym.name}+{insn.address - sym.address:#x}")
    return out


def write_samples(vmlinux: Path, files: list[tuple[Path, int, int]], module: Path | None = None) -> None:
    """Write each (file, count, seed) sample (of the module's text when `module` is given). Run
    in a spawned process: a parent that has loaded the kernel would inflate every child's peak
    RSS (ru_maxrss counts the pages a forked child shares with its parent before exec)."""
    kernel = probelint.load_kernel([vmlinux, *([module] if module else [])])
    image = kernel.modules[0] if module else kernel.vmlinux
    assert image is not None
    for path, count, seed in files:
        path.write_text("\n".join(sample_probes(image, count, seed)) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vmlinux", nargs="?", type=Path)
    ap.add_argument("--module", type=Path, help="a .ko of the same kernel (default: its xfs.ko)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    # probelint is timed as installed, its bytecode cached (pip compiles it at install time); with
    # PYTHONDONTWRITEBYTECODE set, every module edited since its .pyc was written is recompiled on
    # every run, which is not what users see.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    vmlinux = args.vmlinux
    if vmlinux is None:
        from probelint.vmtest.download import ensure_debug_vmlinux

        vmlinux = ensure_debug_vmlinux("linux-image-6.1.0-56-cloud-amd64")
    module = args.module
    if module is None:
        release = vmlinux.name.removeprefix("vmlinux-")
        found = sorted(vmlinux.parent.parent.glob(f"lib/modules/{release}/kernel/fs/xfs/xfs.ko"))
        module = found[0] if found else None
    rows: list[tuple[str, float, int, float]] = []
    tmp = tempfile.TemporaryDirectory()
    work = Path(tmp.name)
    global WORKDIR
    WORKDIR = str(work / "cwd")
    os.mkdir(WORKDIR)
    samples = [(work / f"probes-{size}-{seed}.txt", size, seed) for size in SIZES
               for seed in (1, *range(100, 100 + args.repeat))]
    module_samples = [(work / f"module-{size}.txt", size, 1) for size in (1, 1_000)]
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(write_samples, vmlinux, samples).result()
        if module is not None:
            pool.submit(write_samples, vmlinux, module_samples, module).result()
    nm = median_run(["nm", "-n", str(vmlinux)], args.repeat)
    rows.append(("nm -n", *nm))
    NEIGHBOUR[:] = ["nm", "-n", str(vmlinux)]
    objdump = median_run(["objdump", "-d", "-j", ".text", str(vmlinux)], args.repeat)
    rows.append(("objdump -d -j .text", *objdump))
    # the floor under every probelint row: the interpreter starting (site-packages' .pth hooks included)
    rows.append(("python3 -c pass (interpreter start)", *median_run([sys.executable, "-c", "pass"], args.repeat)))
    cache = work / "cache"

    def probelint_cmd(probes: Path, *images: Path, python: str = sys.executable) -> list[str]:
        return [python, "-m", "probelint", "--cache-dir", str(cache), "--format", "json",
                *map(str, images or (vmlinux,)), str(probes)]

    for size in SIZES:
        probes = work / f"probes-{size}-1.txt"
        cold = median_run(probelint_cmd(probes), args.repeat, before=["rm", "-rf", str(cache)])
        rows.append((f"probelint cold, {size} probes", *cold))
        warm = median_run(probelint_cmd(probes), args.repeat)
        rows.append((f"probelint warm, {size} probes", *warm))
        # The same probes checked again: index and decode facts warm, no stored results (the
        # rules' own speed, which a warm run over unchanged probes no longer shows)
        again = median_run(probelint_cmd(probes), args.repeat, before=["rm", "-rf", str(cache / "results")])
        rows.append((f"probelint warm, {size} probes, results not stored", *again))
        # The index is warm but the probes are new: their functions are decoded for the first time.
        fresh = [median_run(probelint_cmd(work / f"probes-{size}-{100 + run}.txt"), 1) for run in range(args.repeat)]
        rows.append((f"probelint warm index, {size} new probes", statistics.median(t for t, _, _ in fresh),
                     max(r for _, r, _ in fresh), statistics.median(n for _, _, n in fresh)))
    # DWARF is never read on the lint path: a copy without it (same build-id, a fresh index) must
    # cost the same as the full file, though it is a tenth of the size.
    stripped = work / "vmlinux.nodebug"
    subprocess.run(["objcopy", "--strip-debug", str(vmlinux), str(stripped)], check=True)
    for name, image in (("with DWARF", vmlinux), ("DWARF stripped", stripped)):
        cold = median_run(probelint_cmd(work / "probes-1000-1.txt", image), args.repeat,
                          before=["rm", "-rf", str(cache)])
        rows.append((f"probelint cold, 1000 probes, {name} ({image.stat().st_size / 1e6:.0f} MB)", *cold))
    if module is not None:
        # a module's facts are indexed under its build-id, the vmlinux's and its load address
        probes = work / "module-1000.txt"
        cold = median_run(probelint_cmd(probes, vmlinux, module), args.repeat, before=["rm", "-rf", str(cache)])
        rows.append((f"probelint cold, 1000 {module.name} probes", *cold))
        rows.append((f"probelint warm, 1000 {module.name} probes", *median_run(probelint_cmd(probes, vmlinux, module),
                                                                             args.repeat)))
        rows.append((f"probelint warm, 1000 {module.name} probes, results not stored",
                     *median_run(probelint_cmd(probes, vmlinux, module), args.repeat,
                                 before=["rm", "-rf", str(cache / "results")])))
        one = work / "module-1.txt"
        median_run(probelint_cmd(one, vmlinux, module), 1)  # its function's facts stored
        rows.append((f"probelint warm, 1 {module.name} probe", *median_run(probelint_cmd(one, vmlinux, module),
                                                                          args.repeat)))
    # The same warm runs under a user's venv interpreter (no foreign start-up hooks).
    user = user_interpreter(work)
    rows.append(("venv: python3 -c pass (interpreter start)", *median_run([user, "-c", "pass"], args.repeat)))
    median_run(probelint_cmd(work / "probes-1000-1.txt", python=user), 1)  # its functions' facts stored again
    rows.append(("venv: probelint warm, 1000 probes",
                 *median_run(probelint_cmd(work / "probes-1000-1.txt", python=user), args.repeat)))
    if module is not None:
        rows.append((f"venv: probelint warm, 1000 {module.name} probes",
                     *median_run(probelint_cmd(work / "module-1000.txt", vmlinux, module, python=user),
                                 args.repeat)))
    tmp.cleanup()
    print(f"image: {vmlinux} ({vmlinux.stat().st_size / 1e6:.0f} MB), median of {args.repeat} runs, "
          f"{os.cpu_count()} CPUs")
    print("x nm -n: against `nm -n` timed beside the row's own runs (the first row's figure is the start's)")
    print(f"{'command':56} {'seconds':>8} {'peak RSS MB':>12} {'x nm -n':>8} {'x objdump':>10}")
    for name, seconds, rss, beside in rows:
        print(f"{name:56} {seconds:8.3f} {rss / 1024:12.0f} {seconds / beside:8.2f} {seconds / objdump[0]:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
