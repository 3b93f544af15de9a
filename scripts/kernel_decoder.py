#!/usr/bin/env python3
"""Build and run the Linux kernel's own x86 instruction decoder in userspace.

The decoder (arch/x86/lib/insn.c + inat.c, with the attribute tables generated from
x86-opcode-map.txt) is GPL code of the kernel: it is never stored in this repository. This module
takes it at run time from the Debian ``linux-source-<series>`` package, the way perf and objtool
build it (tools/objtool/arch/x86/Build, tools/perf/arch/x86/util/Build):

1. find the source ``.deb`` (``--source-deb FILE|DIR``, ``$PROBELINT_SOURCE_DEB``, the cache
   directory ``${PROBELINT_CACHE:-~/.cache/probelint}/kernels``), or ``apt-get download`` it there;
2. extract only the decoder's files from ``usr/src/linux-source-<series>.tar.xz`` inside it;
3. check that the userspace copies under ``tools/`` match the kernel's own files, ignoring the
   lines marked ``__ignore_sync_check__`` (as tools/objtool/sync-check.sh does);
4. generate ``inat-tables.c`` with ``awk -f arch/x86/tools/gen-insn-attr-x86.awk
   arch/x86/lib/x86-opcode-map.txt`` (the kernel's own map and generator, arch/x86/lib/Makefile);
5. compile ``tools/arch/x86/lib/insn.c`` + ``inat.c`` + our driver
   (scripts/kernel_decoder_driver.c) with gcc.

Everything lands in ``<cache>/kernels/kernel-decoder/<package>_<version>/``; the binary is reused
while the source version and the driver are unchanged.

Command line (mostly for debugging)::

    python scripts/kernel_decoder.py [--source-deb FILE|DIR] [--version V]      # build, print path
    python scripts/kernel_decoder.py ... --hex 'ADDR:HEXBYTES' [--size N]      # walk some bytes
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from probelint.image.cache import default_cache_dir

__all__ = [
    "DRIVER",
    "KernelDecoder",
    "SourceUnavailable",
    "WalkResult",
    "build_kernel_decoder",
    "find_source_deb",
]

SERIES = "6.1"
DRIVER = Path(__file__).resolve().with_name("kernel_decoder_driver.c")
MAX_INSN_SIZE = 15

# The decoder's files in the source tree. (kernel file, userspace copy) pairs are checked to be
# in sync; the tables are generated from the kernel's own map with the kernel's own awk script.
_SYNCED = [
    ("arch/x86/lib/insn.c", "tools/arch/x86/lib/insn.c"),
    ("arch/x86/lib/inat.c", "tools/arch/x86/lib/inat.c"),
    ("arch/x86/include/asm/insn.h", "tools/arch/x86/include/asm/insn.h"),
    ("arch/x86/include/asm/inat.h", "tools/arch/x86/include/asm/inat.h"),
    ("arch/x86/include/asm/inat_types.h", "tools/arch/x86/include/asm/inat_types.h"),
    ("arch/x86/include/asm/emulate_prefix.h", "tools/arch/x86/include/asm/emulate_prefix.h"),
    ("arch/x86/lib/x86-opcode-map.txt", "tools/arch/x86/lib/x86-opcode-map.txt"),
    ("arch/x86/tools/gen-insn-attr-x86.awk", "tools/arch/x86/tools/gen-insn-attr-x86.awk"),
]
OPCODE_MAP = "arch/x86/lib/x86-opcode-map.txt"
GEN_AWK = "arch/x86/tools/gen-insn-attr-x86.awk"
# What to take out of the tarball (directories are extracted whole; they are small).
# (GNU tar matches each name once: no member may lie inside a listed directory.)
_DIRS = {"tools/include", "tools/arch/x86/include"}
_MEMBERS = sorted(_DIRS | {f for pair in _SYNCED for f in pair if not f.startswith(tuple(d + "/" for d in _DIRS))})
_INCLUDES = ["tools/include", "tools/arch/x86/include/uapi", "tools/arch/x86/include"]
_SOURCES = ["tools/arch/x86/lib/insn.c", "tools/arch/x86/lib/inat.c"]


class SourceUnavailable(RuntimeError):
    """The kernel source package, or a tool needed to build the decoder, is not available."""


def _run(cmd: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SourceUnavailable(f"{tool} is not installed (needed to build the kernel's decoder)")
    return path


def _deb_field(deb: Path, field: str) -> str:
    proc = _run([_need("dpkg-deb"), "-f", str(deb), field])
    if proc.returncode != 0:
        raise SourceUnavailable(f"{deb}: not a readable .deb ({proc.stderr.strip()})")
    return proc.stdout.strip()


def _candidates(directory: Path, package: str, version: str | None) -> list[Path]:
    pattern = f"{package}_{version.replace(':', '%3a')}_*.deb" if version else f"{package}_*.deb"
    return sorted(directory.glob(pattern))


def find_source_deb(
    source: str | Path | None = None,
    *,
    version: str | None = None,
    cache_dir: Path | None = None,
    download: bool = True,
    log=None,
) -> Path:
    """The ``linux-source-<series>`` .deb to build from.

    `source` is a .deb or a directory holding it (default ``$PROBELINT_SOURCE_DEB``). The cache's
    ``kernels/`` directory is searched next, then ``apt-get download`` fills it. `version` (the
    Debian version of the vmlinux under test) is preferred; another version is used, with a warning
    through `log`, only when that one cannot be had.
    """
    package = f"linux-source-{SERIES}"
    source = source if source is not None else os.environ.get("PROBELINT_SOURCE_DEB") or None
    kdir = (cache_dir or default_cache_dir()) / "kernels"
    dirs: list[Path] = []
    if source is not None:
        path = Path(source).expanduser()
        if path.is_file():
            return path
        if not path.is_dir():
            raise SourceUnavailable(f"{path}: no such file or directory (expected {package}_*.deb)")
        dirs.append(path)
    dirs.append(kdir)
    for d in dirs:
        if version and (found := _candidates(d, package, version)):
            return found[-1]
    errors = []
    if download:
        if shutil.which("apt-get") is None:
            errors.append("apt-get is not available")
        else:
            kdir.mkdir(parents=True, exist_ok=True)
            for spec in ([f"{package}={version}"] if version else []) + [package]:
                proc = _run(["apt-get", "download", spec], cwd=kdir)
                if proc.returncode == 0:
                    break
                errors.append(f"apt-get download {spec}: {(proc.stderr or proc.stdout).strip()[-300:]}")
            if version and (found := _candidates(kdir, package, version)):
                return found[-1]
    for d in dirs:
        if found := _candidates(d, package, None):
            if version and log:
                log(f"warning: {package} {version} not found; using {found[-1].name}")
            return found[-1]
    where = ", ".join(str(d) for d in dirs)
    raise SourceUnavailable(f"no {package}_*.deb in {where}" + (f" ({'; '.join(errors)})" if errors else ""))


@dataclass(frozen=True)
class WalkResult:
    """The kernel's walk of one symbol: instruction lengths, and where it failed if it did."""

    lengths: bytes
    status: int  # 0, or insn_decode()'s negative errno for the instruction at offset sum(lengths)

    @property
    def failed_at(self) -> int | None:
        return sum(self.lengths) if self.status else None


class KernelDecoder:
    """A built decoder binary."""

    def __init__(self, binary: Path, package: str, version: str, deb: Path) -> None:
        self.binary = binary
        self.package = package
        self.version = version
        self.deb = deb

    def walk(self, records: Iterable[tuple[int, int, bytes]]) -> list[WalkResult]:
        """Walk each (address, size, bytes) record as can_probe()/can_optimize() do.

        `bytes` should extend past `size` by what really follows the symbol (the kernel gives
        insn_decode() MAX_INSN_SIZE bytes wherever it stands).
        """
        blob = bytearray()
        n = 0
        for address, size, code in records:
            blob += struct.pack("<QII", address & 0xFFFFFFFFFFFFFFFF, size, len(code))
            blob += code
            n += 1
        proc = subprocess.run([str(self.binary)], input=bytes(blob), capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.binary} failed: {proc.stderr.decode(errors='replace').strip()}")
        out, pos, results = proc.stdout, 0, []
        for _ in range(n):
            count, status = struct.unpack_from("<Ii", out, pos)
            pos += 8
            results.append(WalkResult(out[pos : pos + count], status))
            pos += count
        if pos != len(out):
            raise RuntimeError(f"{self.binary}: {len(out) - pos} unexpected trailing output bytes")
        return results

    def dump_tables(self) -> str:
        proc = _run([str(self.binary), "--dump-tables"])
        if proc.returncode != 0:
            raise RuntimeError(f"{self.binary} --dump-tables failed: {proc.stderr.strip()}")
        return proc.stdout


def _strip_sync_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "__ignore_sync_check__" not in line]


def _tarball_member(deb: Path) -> str:
    proc = _run(["sh", "-c", f"{_need('dpkg-deb')} --fsys-tarfile \"$1\" | tar -t", "sh", str(deb)])
    names = [m for m in proc.stdout.splitlines() if re.search(r"usr/src/linux-source-[^/]+\.tar\.xz$", m)]
    if proc.returncode != 0 or len(names) != 1:
        raise SourceUnavailable(f"{deb}: no usr/src/linux-source-*.tar.xz inside ({proc.stderr.strip()})")
    return names[0]


def _extract(deb: Path, dest: Path) -> Path:
    """Extract the decoder's files from the source tarball inside `deb`; return the tree root."""
    _need("tar")
    _need("xz")
    tarball = _tarball_member(deb)
    top = Path(tarball).name.removesuffix(".tar.xz")  # linux-source-6.1
    members = [f"{top}/{m}" for m in _MEMBERS]
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="extract.", dir=dest))
    try:
        script = (
            'set -o pipefail; deb=$1 tarball=$2 dest=$3; shift 3; '
            'dpkg-deb --fsys-tarfile "$deb" | tar -xO "$tarball" | tar -xJ -C "$dest" "$@"'
        )
        proc = _run(["bash", "-c", script, "bash", str(deb), tarball, str(tmp), *members])
        missing = [m for m in members if not (tmp / m).exists()]
        if proc.returncode != 0 or missing:
            raise SourceUnavailable(f"cannot extract {missing or members} from {deb}: {proc.stderr.strip()[-500:]}")
        root = dest / "src"
        if root.exists():
            shutil.rmtree(root)
        (tmp / top).rename(root)
        return root
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_kernel_decoder(
    source: str | Path | None = None,
    *,
    version: str | None = None,
    cache_dir: Path | None = None,
    download: bool = True,
    cc: str | None = None,
    log=None,
) -> KernelDecoder:
    """Find the source package, and build (or reuse) the decoder binary for it."""
    cc = cc or os.environ.get("CC") or "gcc"
    _need(cc)
    deb = find_source_deb(source, version=version, cache_dir=cache_dir, download=download, log=log)
    package, deb_version = _deb_field(deb, "Package"), _deb_field(deb, "Version")
    work = (cache_dir or default_cache_dir()) / "kernels" / "kernel-decoder" / f"{package}_{deb_version}"
    driver = DRIVER.read_bytes()
    key = hashlib.sha256(driver + cc.encode() + deb_version.encode()).hexdigest()[:16]
    binary = work / f"kernel-decoder-{key}"
    if binary.exists():
        return KernelDecoder(binary, package, deb_version, deb)

    root = work / "src"
    if not all((root / m).exists() for m in _MEMBERS):
        if log:
            log(f"extracting the x86 decoder from {deb.name} ...")
        root = _extract(deb, work)
    for kfile, tfile in _SYNCED:
        a, b = (root / kfile).read_text(), (root / tfile).read_text()
        if _strip_sync_lines(a) != _strip_sync_lines(b):
            raise SourceUnavailable(f"{deb.name}: {tfile} is not in sync with {kfile}; refusing to build")

    gen = work / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    awk = os.environ.get("AWK") or "awk"
    proc = _run([_need(awk), "-f", str(root / GEN_AWK), str(root / OPCODE_MAP)])
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"{GEN_AWK} failed: {proc.stderr.strip()}")
    (gen / "inat-tables.c").write_text(proc.stdout)

    tmp = binary.with_name(binary.name + f".tmp{os.getpid()}")
    cmd = [cc, "-O2", "-g", "-Wall", "-I", str(gen)]
    cmd += [f"-I{root / inc}" for inc in _INCLUDES]
    cmd += ["-o", str(tmp), str(DRIVER)] + [str(root / s) for s in _SOURCES]
    proc = _run(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling the kernel decoder failed:\n{' '.join(cmd)}\n{proc.stderr}")
    tmp.rename(binary)
    if log:
        log(f"built {binary} from {deb.name}")
    return KernelDecoder(binary, package, deb_version, deb)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source-deb", help="linux-source .deb, or a directory holding it")
    ap.add_argument("--version", help="Debian version of linux-source to prefer (e.g. 6.1.192-2)")
    ap.add_argument("--no-download", action="store_true", help="never run apt-get download")
    ap.add_argument("--hex", help="ADDR:HEXBYTES to walk (prints the instruction boundaries)")
    ap.add_argument("--size", type=int, help="symbol size for --hex (default: all the bytes)")
    args = ap.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    try:
        dec = build_kernel_decoder(args.source_deb, version=args.version, download=not args.no_download, log=log)
    except SourceUnavailable as exc:
        print(f"kernel_decoder: {exc}", file=sys.stderr)
        return 2
    if not args.hex:
        print(dec.binary)
        return 0
    addr_s, _, hex_s = args.hex.rpartition(":")
    code = bytes.fromhex(hex_s)
    address = int(addr_s, 16) if addr_s else 0
    (res,) = dec.walk([(address, args.size if args.size is not None else len(code), code)])
    off = 0
    for n in res.lengths:
        print(f"{address + off:#x} +{off:#x} {code[off : off + n].hex(' ')}")
        off += n
    if res.status:
        print(f"{address + off:#x} +{off:#x} undecodable (insn_decode returned {res.status}): "
              f"{code[off : off + MAX_INSN_SIZE].hex(' ')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
