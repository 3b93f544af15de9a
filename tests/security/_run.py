"""Running probelint as a user does, in a subprocess bounded in time and memory: a hang or a
runaway allocation fails the test instead of blocking the suite."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

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


def one_error(proc: subprocess.CompletedProcess[str], *wanted: str) -> str:
    """The run ended with exit status 2 and one `probelint: error:` line (containing `wanted`)."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr[-2000:])
    line = lines[0]
    assert line.startswith("probelint: error: ") and "internal error" not in line, line
    for text in wanted:
        assert text in line, line
    return line
