"""Boot a kernel + initramfs under QEMU (TCG) and collect both serial ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from probelint.arch.x86.cpu import DEFAULT_PROFILE

from .download import HarnessUnavailable

# the QEMU CPU model the default --cpu-profile was measured on
DEFAULT_CPU = DEFAULT_PROFILE.model.qemu.split()[0]

__all__ = ["DEFAULT_CMDLINE", "MEMORY_MB", "BootResult", "boot", "qemu_binary"]

DEFAULT_CMDLINE = "console=ttyS0 nokaslr panic=-1 quiet"
MEMORY_MB = 2048


@dataclass
class BootResult:
    """What one QEMU run produced."""

    results: str  # text from the guest's /dev/ttyS1 (CR stripped)
    console: str  # text from the guest's /dev/ttyS0
    returncode: int | None
    timed_out: bool
    elapsed: float  # wall seconds
    command: list[str]

    @property
    def completed(self) -> bool:
        """True when the guest script reached its ``DONE`` marker."""
        return any(line == "DONE" for line in self.results.splitlines())


def qemu_binary() -> str:
    """Return the path of ``qemu-system-x86_64`` or raise :class:`HarnessUnavailable`."""
    exe = shutil.which("qemu-system-x86_64")
    if exe is None:
        raise HarnessUnavailable(
            "qemu-system-x86_64 not found (apt-get install --no-install-recommends qemu-system-x86)"
        )
    return exe


def boot(
    bzimage: Path,
    initrd: bytes,
    *,
    cpu: str = DEFAULT_CPU,
    timeout: float = 120.0,
    smp: int = 2,
    memory_mb: int = MEMORY_MB,
    cmdline_extra: str = "",
    workdir: Path | None = None,
    qemu_args: tuple[str, ...] = (),
) -> BootResult:
    """Boot ``bzimage`` with ``initrd`` (gzip cpio bytes); kill QEMU after ``timeout`` seconds.
    `qemu_args` are added to the command line (devices a mode needs: vmtest --live-check's virtiofs)."""
    exe = qemu_binary()
    tmp = tempfile.TemporaryDirectory(prefix="probelint-vm-", dir=workdir)
    with tmp:
        d = Path(tmp.name)
        (d / "initrd.gz").write_bytes(initrd)
        con, res = d / "console.log", d / "results.log"
        cmd = [
            exe,
            "-machine", "q35",
            "-accel", "tcg",
            "-cpu", cpu,
            "-smp", str(smp),
            "-m", str(memory_mb),
            "-nodefaults",
            "-display", "none",
            "-no-reboot",
            "-kernel", str(bzimage),
            "-initrd", str(d / "initrd.gz"),
            "-append", f"{DEFAULT_CMDLINE} {cmdline_extra}".strip(),
            "-chardev", f"file,id=con,path={con}",
            "-serial", "chardev:con",
            "-chardev", f"file,id=res,path={res}",
            "-serial", "chardev:res",
            *qemu_args,
        ]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        elapsed = time.monotonic() - start
        console = con.read_text(errors="replace") if con.exists() else ""
        if out:
            console += "\n[qemu] " + out.decode(errors="replace")
        results = res.read_text(errors="replace") if res.exists() else ""
        return BootResult(
            results=results.replace("\r", ""),
            console=console.replace("\r", ""),
            returncode=proc.returncode,
            timed_out=timed_out,
            elapsed=elapsed,
            command=cmd,
        )
