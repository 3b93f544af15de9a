"""Running probelint as a user does, in a subprocess bounded in time and memory: a hang or a
runaway allocation fails the test instead of blocking the suite."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

from tests.conftest import DEMO, ROOT

IMAGE = DEMO / "demo.elf"
PROBES = DEMO / "probes.txt"


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def probelint(*args: str | Path, cwd: Path | None = None, timeout: float = 60,
              stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROBELINT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "probelint", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_limit, cwd=cwd or ROOT, env=env, input=stdin)


def one_error(proc: subprocess.CompletedProcess[str] | Run, *wanted: str) -> str:
    """The run ended with exit status 2 and one `probelint: error:` line (containing `wanted`)."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr[-2000:])
    line = lines[0]
    assert line.startswith("probelint: error: ") and "internal error" not in line, line
    for text in wanted:
        assert text in line, line
    return line


MiB = 1 << 20
# A small interpreter forks the measured process, which sets its limits and execs probelint, and
# reports that child's peak RSS: the rusage of a process spawned from pytest itself would count
# pytest's pages too (the kernel carries the pre-exec high-water mark over exec).
_LIMITED_EXEC = """
import os, resource, sys
mem, cpu, report = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    os.execv(sys.executable, [sys.executable, "-m", "probelint", *sys.argv[4:]])
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_mib: float


def bounded(args: list[str], *, memory_mib: int, seconds: int, cwd: Path = ROOT) -> Run:
    """``python -m probelint ARGS`` under `memory_mib` of address space and `seconds` of CPU time
    (the bound a runaway loop meets: CPU time, not wall time, which a loaded machine stretches),
    killed as hung after four times that of wall time; its peak RSS read from its own rusage."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as report:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _LIMITED_EXEC, str(memory_mib * MiB), str(seconds),
                                 report.name, *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                cwd=cwd, env=env, start_new_session=True)
        wall = 4 * seconds
        timer = threading.Timer(wall, os.killpg, (proc.pid, 9))  # a hang: blocked, not computing
        timer.start()
        returncode = proc.wait()
        timer.cancel()
        elapsed = time.monotonic() - start
        assert elapsed < wall, f"no end within {wall} s: {args}"
        out.seek(0)
        err.seek(0)
        return Run(returncode, out.read(), err.read(), elapsed, int(report.read() or 0) / 1024)
