"""``probelint vmtest --live-check``: `probelint --live` run inside the booted guest, graded against it.

The host's root is shared into the guest read-only with virtiofs (Debian's cloud kernels build
neither 9p nor virtio-9p: CONFIG_NET_9P is off; virtio_pci, fuse and virtiofs are modules on 6.1,
built in on 7.2), the
guest chroots into it with its own /proc, /sys, debugfs and tracefs mounted there, and runs the
host's python3 on this worktree's probelint, the way virtme-ng runs a host's tools in a guest:

1. the probes of every phase but the last are registered through kprobe_events, enabled, and
   left to the optimizer (the probes already there when probelint runs);
2. ``probelint --live --format json IMAGE PROBES`` on the last phase's probes (the runner's
   ``before_phase`` hook): its report comes back as ``X out`` records;
3. the last phase's probes are registered too, and the kernel's verdicts (kprobes/list after the
   optimizer settled) are graded against what probelint said in step 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .compare import Comparison, PredictedVerdict, compare_verdicts
from .download import HarnessUnavailable
from .runner import DEFAULT_KERNEL_PACKAGE, BootInfo, GuestSetup, run_probes_report
from .sampler import Sample
from .vm import DEFAULT_CPU, MEMORY_MB

__all__ = ["LiveCheck", "guest_hook", "predicted_from_report", "run_live_check", "virtiofs_share"]

GUEST_ROOT = "/host"
LINT_FILE = "live-probes.txt"  # in the initramfs; copied to the guest's tmpfs /tmp of the chroot
MODULES = ["virtio_pci", "virtiofs"]  # modules on 6.1's cloud flavour, built in on 7.2's
LINT_TIMEOUT = 1200  # seconds: a warm probelint run is ~2 s natively, and TCG is slow
_VIRTIOFSD = ("virtiofsd", "/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd")


def _virtiofsd() -> str:
    for name in _VIRTIOFSD:
        path = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
        if path:
            return path
    raise HarnessUnavailable("virtiofsd not found (Debian 12: qemu-system-common; later: the virtiofsd package)")


@contextmanager
def virtiofs_share(shares: dict[str, Path]) -> Iterator[tuple[str, ...]]:
    """Serve each directory of `shares` (tag -> directory) with a virtiofsd of its own for one
    boot; yields the QEMU arguments (vhost-user needs the guest's memory shared with the daemons)."""
    exe = _virtiofsd()
    args: list[str] = ["-object", f"memory-backend-memfd,id=mem,size={MEMORY_MB}M,share=on", "-numa", "node,memdev=mem"]
    with tempfile.TemporaryDirectory(prefix="probelint-vfs-") as tmp, ExitStack() as stack:
        for n, (tag, directory) in enumerate(shares.items()):
            sock, log = Path(tmp) / f"{tag}.sock", stack.enter_context(open(Path(tmp) / f"{tag}.log", "wb"))
            # sandbox=chroot: namespaces are not available in every container; the guest mounts
            # what must stay unchanged read-only
            proc = stack.enter_context(subprocess.Popen(
                [exe, f"--socket-path={sock}", "-o", f"source={directory}", "-o", "sandbox=chroot", "-o", "cache=auto"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True))
            stack.callback(_stop, proc)
            for _ in range(100):
                if sock.exists() or proc.poll() is not None:
                    break
                time.sleep(0.05)
            if not sock.exists():
                raise HarnessUnavailable(f"virtiofsd did not start: "
                                         f"{(Path(tmp) / f'{tag}.log').read_text(errors='replace').strip()[-500:]}")
            args += ["-chardev", f"socket,id=vfs{n},path={sock}",
                     "-device", f"vhost-user-fs-pci,chardev=vfs{n},tag={tag}"]
        yield tuple(args)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def guest_hook(lint_phase: int, argv: list[str], pythonpath: str, dump: bool = False) -> str:
    """The ``before_phase`` shell function: mount the host root, chroot, run `argv` (probelint's
    arguments; the probe file is ``/tmp/LINT_FILE`` in the chroot) and report it as ``X`` records;
    with `dump`, the guest's /proc/kallsyms and /proc/modules (read as root) go to the ``out`` share."""
    quoted = " ".join(_sh(a) for a in argv)
    r = GUEST_ROOT
    copy = """  mkdir -p /out && mount -t virtiofs out /out && cp /proc/kallsyms /proc/modules /out/ \\
    && echo "X dumped $(wc -l < /out/kallsyms)" >&3 || echo "X dump failed" >&3
""" if dump else ""
    return f"""before_phase() {{
  [ "$1" = {lint_phase} ] || return 0
{copy}  mkdir -p {r}
  if ! mount -t virtiofs -o ro hostroot {r} 2>/tmp/err; then echo "X mount $(one /tmp/err)" >&3; return 0; fi
  mount -t proc proc {r}/proc && mount -t sysfs sysfs {r}/sys && mount -t tmpfs tmpfs {r}/tmp \\
    && mount -t devtmpfs devtmpfs {r}/dev && mount -t debugfs debugfs {r}/sys/kernel/debug \\
    || echo "X mount chroot filesystems failed" >&3
  mount -t tracefs tracefs {r}/sys/kernel/tracing 2>/dev/null
  cp /{LINT_FILE} {r}/tmp/{LINT_FILE}
  up $1 lint-start
  chroot {r} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root PYTHONPATH={_sh(pythonpath)} \\
    {quoted} /tmp/{LINT_FILE} > /tmp/lint.out 2> /tmp/lint.err
  echo "X rc $?" >&3
  up $1 lint-done
  sed 's/^/X out /' /tmp/lint.out >&3
  sed 's/^/X err /' /tmp/lint.err >&3
}}"""


def _sh(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


@dataclass
class LiveCheck:
    """One --live-check boot: the graded probes, probelint's exit status and stderr, the boot."""

    comparisons: list[Comparison]
    returncode: int | None
    stderr: list[str]
    findings: dict[str, list[str]]  # spec -> rule ids probelint reported in the guest
    boot: BootInfo | None


def predicted_from_report(report: dict, count: int) -> list[PredictedVerdict | None]:
    """probelint's JSON report (schema/report.schema.json) as one verdict per line of the probe
    file (line k+1 is probe k); None where it reported nothing for a line."""
    out: list[PredictedVerdict | None] = [None] * count
    for probe in report.get("probes", []):
        k = probe.get("line", 0) - 1
        if 0 <= k < count and out[k] is None:
            v = probe["verdict"]
            out[k] = PredictedVerdict(
                registers=v["registers"], errno=v["errno"], optimized=v["optimized"], ftrace=v["ftrace"],
                findings=[{"rule": f["rule"], "severity": f["severity"], "message": f["message"]}
                          for f in probe.get("findings", [])],
                address=int(probe["address"], 16) if probe.get("address") else None, symbol=probe.get("symbol"))
    return out


def run_live_check(
    before: list[Sample],
    linted: list[Sample],
    image: Path,
    *,
    kernel_package: str = DEFAULT_KERNEL_PACKAGE,
    cpu: str = DEFAULT_CPU,
    cache_dir: Path | None = None,
    extra_args: list[str] | None = None,
    dump_to: Path | None = None,
    log: Callable[[str], None] | None = None,
    modules: list[str] | None = None,
) -> LiveCheck:
    """Register `before`, run ``probelint --live`` on `linted` in the guest, register `linted`,
    and grade (see the module docstring). `image` is the host path probelint is given; `dump_to`
    a host directory that receives the guest's ``kallsyms`` and ``modules`` as root reads them;
    `modules` loaded in the guest besides those virtiofs needs."""
    import probelint

    pythonpath = str(Path(probelint.__file__).resolve().parent.parent)
    argv = [sys.executable, "-m", "probelint", "--live", "--format", "json", "--fail-level", "error",
            *(extra_args or []), str(image)]
    specs = [s.spec for s in [*before, *linted]]
    phases = [list(range(len(before))), list(range(len(before), len(specs)))] if before else None
    lint_phase = 1 if before else 0
    lint_text = "".join(f"{s.spec}\n" for s in linted).encode()
    shares = {"hostroot": Path("/"), **({"out": dump_to} if dump_to is not None else {})}
    with virtiofs_share(shares) as qemu_args:
        setup = GuestSetup(list(modules or []), MODULES, guest_hook(lint_phase, argv, pythonpath, dump_to is not None),
                           {LINT_FILE: lint_text}, qemu_args, LINT_TIMEOUT)
        rep = run_probes_report(specs, kernel_package=kernel_package, cpu=cpu, cache_dir=cache_dir, phases=phases,
                                batch_size=len(specs), log=log, setup=setup)
    boot = rep.boots[-1] if rep.boots else None
    lines = boot.hook_lines if boot is not None else []
    out = "\n".join(line[4:] for line in lines if line.startswith("out "))
    err = [line[4:] for line in lines if line.startswith("err ")]
    rc = next((int(line.split()[1]) for line in lines if line.startswith("rc ")), None)
    if boot is not None and not out:
        problem = next((line for line in lines if line.startswith("mount")), None)
        raise HarnessUnavailable(f"probelint --live gave no report in the guest (exit {rc}; "
                                 f"{problem or ' | '.join(err[-5:]) or 'no output'})\n{boot.console_tail}")
    try:
        report = json.loads(out)
    except ValueError as exc:
        raise HarnessUnavailable(f"probelint --live in the guest wrote no JSON report ({exc}): {out[:300]}") from None
    predicted = predicted_from_report(report, len(linted))
    comps = []
    findings: dict[str, list[str]] = {}
    for sample, kv, pv in zip(linted, rep.verdicts[len(before):], predicted, strict=True):
        pv = pv or PredictedVerdict(False, "NOT_REPORTED", False, False)
        findings[sample.spec] = [f["rule"] for f in pv.findings]
        comps.append(compare_verdicts(sample, cpu, kv, pv))
    return LiveCheck(comps, rc, err, findings, boot)
