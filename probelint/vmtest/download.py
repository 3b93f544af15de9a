"""Fetch and unpack the Debian packages the VM harness needs.

Everything is kept in a cache directory (see :func:`default_cache_dir`) under
``kernels/``: the ``.deb`` files fetched with ``apt-get download`` and, next to
each, a directory holding only the members extracted from it.

Only the standard library and the Debian tools ``apt-get``, ``dpkg-deb`` and
``tar`` are used.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from probelint.image.cache import default_cache_dir

__all__ = [
    "HarnessUnavailable",
    "KernelBundle",
    "default_cache_dir",
    "ensure_busybox",
    "ensure_deb",
    "ensure_debug_vmlinux",
    "ensure_kernel",
    "extract_members",
    "kernel_abi",
    "list_members",
    "modinfo",
]


class HarnessUnavailable(RuntimeError):
    """A tool or package needed to boot a kernel cannot be had on this machine."""


_apt_updated = False


def _kernels_dir(cache_dir: Path | None) -> Path:
    d = (cache_dir if cache_dir is not None else default_cache_dir()) / "kernels"
    d.mkdir(parents=True, exist_ok=True)
    return d


def kernel_abi(kernel_package: str) -> str:
    """``linux-image-6.1.0-56-cloud-amd64[-unsigned|-dbg]`` -> ``6.1.0-56-cloud-amd64``."""
    abi = kernel_package
    if abi.startswith("linux-image-"):
        abi = abi[len("linux-image-") :]
    for suffix in ("-unsigned", "-dbg"):
        if abi.endswith(suffix):
            abi = abi[: -len(suffix)]
    return abi


def _find_deb(directory: Path, package: str) -> Path | None:
    debs = sorted(directory.glob(f"{package}_*.deb"))
    return debs[-1] if debs else None


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def ensure_deb(package: str, cache_dir: Path | None = None) -> Path:
    """Return the path of ``package``'s ``.deb`` in the cache, downloading it if needed.

    Runs ``apt-get download`` in the cache directory; when apt does not know the
    package, ``apt-get update`` is run once (per process) and the download retried.
    """
    global _apt_updated
    kdir = _kernels_dir(cache_dir)
    found = _find_deb(kdir, package)
    if found is not None:
        return found
    if shutil.which("apt-get") is None:
        raise HarnessUnavailable(f"{package}: not in {kdir} and apt-get is not available")
    proc = _run(["apt-get", "download", package], cwd=kdir)
    if proc.returncode != 0 and not _apt_updated:
        _apt_updated = True
        upd = _run(["apt-get", "update"])
        if upd.returncode == 0:
            proc = _run(["apt-get", "download", package], cwd=kdir)
    found = _find_deb(kdir, package)
    if proc.returncode != 0 or found is None:
        raise HarnessUnavailable(f"apt-get download {package} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return found


def _unpack_dir(deb: Path) -> Path:
    d = deb.with_suffix("")  # <name>_<ver>_<arch>/
    d.mkdir(parents=True, exist_ok=True)
    return d


def list_members(deb: Path) -> list[str]:
    """List the data members of ``deb`` (``./boot/...``), cached next to the unpack directory."""
    listing = _unpack_dir(deb) / ".members"
    if listing.exists():
        return listing.read_text().splitlines()
    cmd = f"dpkg-deb --fsys-tarfile {_q(deb)} | tar -t"
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessUnavailable(f"cannot list {deb}: {proc.stderr.strip()}")
    members = [m for m in proc.stdout.splitlines() if m]
    listing.write_text("\n".join(members) + "\n")
    return members


def _q(p: Path | str) -> str:
    return "'" + str(p).replace("'", "'\\''") + "'"


def extract_members(deb: Path, members: list[str]) -> Path:
    """Extract ``members`` (tar names such as ``./boot/vmlinuz-X``) of ``deb``; return the unpack dir.

    Members that already exist in the unpack directory are not extracted again.
    """
    dest = _unpack_dir(deb)
    todo = [m for m in members if not (dest / m).exists()]
    if todo:
        if shutil.which("dpkg-deb") is None:
            raise HarnessUnavailable("dpkg-deb is not available")
        cmd = f"dpkg-deb --fsys-tarfile {_q(deb)} | tar -x -C {_q(dest)} " + " ".join(_q(m) for m in todo)
        proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=False)
        missing = [m for m in todo if not (dest / m).exists()]
        if proc.returncode != 0 or missing:
            raise HarnessUnavailable(f"cannot extract {missing or todo} from {deb}: {proc.stderr.strip()[-500:]}")
    return dest


# --------------------------------------------------------------------------- modules


def modinfo(ko: Path) -> dict[str, str]:
    """The ``.modinfo`` fields of an (uncompressed) module (first value wins)."""
    from probelint.image.elf import ElfFile
    from probelint.image.module import modinfo as read_modinfo

    return read_modinfo(ElfFile(ko))


_KO_RE = re.compile(r"\.ko(\.xz|\.zst|\.gz)?$")


def _mod_key(name: str) -> str:
    return _KO_RE.sub("", os.path.basename(name)).replace("-", "_")


def _decompressed(path: Path) -> Path:
    """Return an uncompressed copy of a module (busybox insmod may not decompress)."""
    if path.suffix == ".ko":
        return path
    out = path.with_name(_mod_key(path.name) + ".ko")
    if out.exists():
        return out
    if path.suffix == ".xz":
        out.write_bytes(lzma.decompress(path.read_bytes()))
    elif path.suffix == ".gz":
        import gzip

        out.write_bytes(gzip.decompress(path.read_bytes()))
    elif path.suffix == ".zst":
        if shutil.which("zstd") is None:
            raise HarnessUnavailable(f"{path.name} is zstd-compressed and zstd is not installed")
        subprocess.run(["zstd", "-q", "-d", "-f", str(path), "-o", str(out)], check=True)
    else:
        raise HarnessUnavailable(f"unknown module compression: {path}")
    return out


@dataclass
class KernelBundle:
    """A bootable kernel and the (uncompressed) modules to load, in load order."""

    abi: str
    bzimage: Path
    modules: list[Path] = field(default_factory=list)
    package: str = ""


def _pick_image_package(kernel_package: str, cache_dir: Path | None) -> Path:
    base = kernel_package.removesuffix("-unsigned").removesuffix("-dbg")
    errors: list[str] = []
    for pkg in (base + "-unsigned", base):
        try:
            return ensure_deb(pkg, cache_dir)
        except HarnessUnavailable as exc:
            errors.append(str(exc))
    raise HarnessUnavailable("; ".join(errors))


def ensure_kernel(kernel_package: str, cache_dir: Path | None = None, modules: list[str] | None = None) -> KernelBundle:
    """Fetch ``<kernel_package>-unsigned`` (or the package itself) and extract the bzImage and modules.

    ``modules`` are names (``xfs``) or in-package paths; their ``depends=`` are
    followed recursively and returned first (load order).
    """
    abi = kernel_abi(kernel_package)
    deb = _pick_image_package(kernel_package, cache_dir)
    members = list_members(deb)
    image = next(
        (m for m in members if m.rstrip("/") in (f"./boot/vmlinuz-{abi}", f"./usr/boot/vmlinuz-{abi}")),
        None,
    )
    if image is None:
        raise HarnessUnavailable(f"{deb.name} has no ./boot/vmlinuz-{abi}")
    by_key: dict[str, str] = {}
    for m in members:
        if f"/modules/{abi}/" in m and _KO_RE.search(m):
            by_key.setdefault(_mod_key(m), m)
    dest = extract_members(deb, [image])

    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = _mod_key(name)
        if key in seen:
            return
        if key in chain:
            raise HarnessUnavailable(f"module dependency cycle: {' -> '.join((*chain, key))}")
        member = by_key.get(key)
        if member is None:
            raise HarnessUnavailable(f"module {name!r} not found in {deb.name}")
        path = _decompressed(extract_members(deb, [member]) / member)
        for dep in filter(None, modinfo(path).get("depends", "").split(",")):
            visit(dep, (*chain, key))
        seen.add(key)
        order.append(path)

    for mod in modules or []:
        visit(mod, ())
    return KernelBundle(abi=abi, bzimage=dest / image, modules=order, package=deb.name)


def ensure_debug_vmlinux(kernel_package: str, cache_dir: Path | None = None) -> Path:
    """Fetch ``<kernel_package>-dbg`` (large) and return the path of the unstripped vmlinux."""
    abi = kernel_abi(kernel_package)
    deb = ensure_deb(f"linux-image-{abi}-dbg", cache_dir)
    member = f"./usr/lib/debug/boot/vmlinux-{abi}"
    return extract_members(deb, [member]) / member


def ensure_busybox(cache_dir: Path | None = None) -> Path:
    """Return a static busybox binary: from the cached ``busybox-static`` package (downloaded if needed)."""
    deb = ensure_deb("busybox-static", cache_dir)
    return extract_members(deb, ["./bin/busybox"]) / "bin" / "busybox"
