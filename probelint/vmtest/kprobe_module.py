"""``probelint vmtest --register-kprobe``: the register_kprobe() path on a booted kernel.

SystemTap and kernel modules call register_kprobe() themselves and never meet kprobe_events'
front end (trace_kprobe.c: the notrace refusal, the symbol's uniqueness). To see what the kernel
does on that path, kmod/plkprobe.c (GPL, a few dozen lines) is built against Debian's headers
(linux-headers-ABI, its -common, linux-kbuild-X.Y: fetched through the private apt lists of
download.py, unpacked under the kernels cache) with this machine's gcc, loaded in the guest with
the points as a module parameter; its return values (dmesg) and kprobes/list's flags are graded
against probelint's verdicts on the register_kprobe path (Origin REGISTER_KPROBE).
"""

from __future__ import annotations

import errno as _errno
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from .compare import Comparison, PredictedVerdict, compare_verdicts
from .download import HarnessUnavailable, _kernels_dir, ensure_busybox, ensure_deb, ensure_kernel, kernel_abi
from .initramfs import build_initramfs
from .runner import (
    _KERNEL_ONLY,
    DEFAULT_KERNEL_PACKAGE,
    BootInfo,
    KernelVerdict,
    _match,
    parse_list_line,
    parse_report,
    parse_spec,
)
from .sampler import Sample
from .vm import DEFAULT_CPU, boot

__all__ = ["POINT", "build_module", "ensure_headers", "grade_register_kprobe", "run_register_kprobe"]

SOURCE = Path(__file__).parent / "kmod" / "plkprobe.c"
POINT = re.compile(r"[A-Za-z_][\w.]*(\+(0x[0-9a-fA-F]+|\d+))?")  # what kp->symbol_name/offset take
_RESULT = re.compile(r"plkprobe: (\d+) (-?\d+) ([0-9a-f]+|\(null\))")


def ensure_headers(kernel_package: str = DEFAULT_KERNEL_PACKAGE, cache_dir: Path | None = None) -> Path:
    """The kbuild tree of `kernel_package` (``.../usr/src/linux-headers-ABI``), unpacked once.
    Debian's per-flavour Makefile includes the -common one by its absolute /usr/src path: it is
    pointed at the unpacked copy."""
    abi = kernel_abi(kernel_package)
    m = re.fullmatch(r"((\d+)\.(\d+)\.\d+-\d+)-(.+)", abi)
    if m is None:
        raise HarnessUnavailable(f"cannot name the headers packages of {abi}")
    base, major, minor = m[1], m[2], m[3]
    root = _kernels_dir(cache_dir) / f"headers-{abi}"
    tree = root / "usr" / "src" / f"linux-headers-{abi}"
    if not (tree / "Module.symvers").is_file():
        for package in (f"linux-headers-{abi}", f"linux-headers-{base}-common", f"linux-kbuild-{major}.{minor}"):
            deb = ensure_deb(package, cache_dir)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
    makefile = tree / "Makefile"
    text = makefile.read_text()
    if "include /usr/src/" in text:
        makefile.write_text(text.replace("include /usr/src/", f"include {root}/usr/src/"))
    return tree


def build_module(tree: Path, workdir: Path) -> Path:
    """plkprobe.ko built against `tree` in `workdir`."""
    (workdir / "plkprobe.c").write_bytes(SOURCE.read_bytes())
    (workdir / "Makefile").write_text("obj-m := plkprobe.o\n")
    if shutil.which("make") is None:
        raise HarnessUnavailable("make is needed to build plkprobe.ko (apt-get install make)")
    proc = subprocess.run(["make", "-C", str(tree), f"M={workdir}", "modules"], capture_output=True, text=True)
    ko = workdir / "plkprobe.ko"
    if proc.returncode or not ko.is_file():
        raise HarnessUnavailable(f"cannot build plkprobe.ko: {(proc.stderr or proc.stdout).strip()[-600:]}")
    return ko


# one insmod per line of points.txt (a charp parameter takes 1024 bytes): results, the list once
# the optimizer settled, then rmmod (which unregisters them) before the next
_HOOK = r"""before_phase() {
  [ "$1" = 0 ] || return 0
  n=0
  while read -r first pts; do
    dmesg -c > /dev/null
    insmod /plkprobe.ko first=$first points="$pts" 2>/tmp/err || echo "X insmod $(one /tmp/err)" >&3
    dmesg | grep 'plkprobe: ' | sed 's/^/X /' >&3
    settle $n
    sed 's/^/X list /' $L >&3
    rmmod plkprobe
    n=$((n+1))
  done < /points.txt
}"""
PARAM_MAX = 1000  # bytes of points per insmod (kernel/params.c param_set_charp: 1024)


def chunks(points: list[str]) -> list[tuple[int, str]]:
    """(index of the first, comma-joined points) per insmod."""
    out: list[tuple[int, str]] = []
    for k, point in enumerate(points):
        if out and len(out[-1][1]) + 1 + len(point) <= PARAM_MAX:
            out[-1] = (out[-1][0], f"{out[-1][1]},{point}")
        else:
            out.append((k, point))
    return out


def errno_of(ret: int) -> str | None:
    """register_kprobe()'s return value as an errno name (None: registered)."""
    if ret >= 0:
        return None
    return _KERNEL_ONLY.get(-ret) or _errno.errorcode.get(-ret) or f"E{-ret}"


def run_register_kprobe(points: list[str], *, kernel_package: str = DEFAULT_KERNEL_PACKAGE, cpu: str = DEFAULT_CPU,
                        cache_dir: Path | None = None,
                        log: Callable[[str], None] | None = None) -> tuple[list[KernelVerdict], BootInfo]:
    """Boot `kernel_package` and register_kprobe() each ``SYM[+OFF]`` of `points` from plkprobe.ko."""
    for p in points:
        if not POINT.fullmatch(p):
            raise ValueError(f"not a SYM[+OFF] point: {p!r}")
    tree = ensure_headers(kernel_package, cache_dir)
    bundle = ensure_kernel(kernel_package, cache_dir)
    with tempfile.TemporaryDirectory(prefix="probelint-kmod-") as tmp:
        ko = build_module(tree, Path(tmp)).read_bytes()
    initrd = build_initramfs(ensure_busybox(cache_dir), [], hook=_HOOK,
                             files={"plkprobe.ko": ko,
                                    "points.txt": "".join(f"{k} {text}\n" for k, text in chunks(points)).encode()})
    res = boot(bundle.bzimage, initrd, cpu=cpu, timeout=120 + 0.2 * len(points) + 40 * len(chunks(points)))
    info = BootInfo(list(range(len(points))), res.elapsed, res.completed, res.timed_out,
                    console_tail="\n".join(res.console.splitlines()[-25:]))
    parse_report(res.results, info)  # the hook's X records into info.hook_lines
    if log:
        log(f"boot: {len(points)} points through register_kprobe(), {res.elapsed:.1f}s, completed={res.completed}")
    returns: dict[int, tuple[int, int | None]] = {}
    for line in info.hook_lines:
        if (m := _RESULT.search(line)) is not None:
            returns[int(m[1])] = (int(m[2]), None if m[3] == "(null)" else int(m[3], 16))
    if not returns:
        problem = next((line for line in info.hook_lines if line.startswith("insmod")), "no plkprobe lines")
        raise HarnessUnavailable(f"plkprobe.ko reported nothing ({problem})\n{info.console_tail}")
    listed = [e for line in info.hook_lines if line.startswith("list ") and (e := parse_list_line(line[5:]))]
    out = []
    for k, point in enumerate(points):
        ret, addr = returns.get(k, (None, None))
        if ret is None:
            out.append(KernelVerdict(point, False, "NOT_RUN", "plkprobe did not report it", False, False, False, None))
            continue
        v = KernelVerdict(point, ret == 0, errno_of(ret), "" if ret == 0 else f"register_kprobe() = {ret}",
                          False, False, False, addr)
        entry = _match(parse_spec(point), addr, listed) if ret == 0 else None
        if entry is not None:
            v.listed, v.list_line = True, entry.line
            v.optimized, v.ftrace = "OPTIMIZED" in entry.flags, "FTRACE" in entry.flags
        out.append(v)
    return out, info


def predicted_register_kprobe(kernel, points: list[str]) -> list[PredictedVerdict]:
    """probelint's verdicts for `points` as register_kprobe() alone would get them."""
    from probelint.config import Config
    from probelint.pipeline import run
    from probelint.readers.spec import REGISTER_KPROBE, Origin, ProbeSpec, parse_text

    specs = [s._replace(origin=Origin(REGISTER_KPROBE, "kernel module"))
             for s in parse_text("\n".join(points), "<plkprobe>") if isinstance(s, ProbeSpec)]
    if len(specs) != len(points):
        raise ValueError("every point must be a probe spec")
    out = []
    for res in run(Config(hints="never"), kernel, specs).results:
        v = res.verdict
        out.append(PredictedVerdict(v.registers, v.errno, v.optimized, v.ftrace,
                                    [{"rule": f.rule, "severity": str(f.severity), "message": f.message}
                                     for f in res.findings]))
    return out


def grade_register_kprobe(kernel, samples: list[Sample], *, cpu: str = DEFAULT_CPU,
                          **kwargs) -> tuple[list[Comparison], BootInfo]:
    """Both sides for `samples` (``SYM[+OFF]`` specs) on the register_kprobe() path."""
    points = [s.spec for s in samples]
    kernel_side, info = run_register_kprobe(points, cpu=cpu, **kwargs)
    predicted = predicted_register_kprobe(kernel, points)
    return [compare_verdicts(s, cpu, kv, pv) for s, kv, pv in zip(samples, kernel_side, predicted, strict=True)], info
