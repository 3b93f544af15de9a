"""Fetch and unpack the Debian packages the VM harness needs.

Everything is kept in a cache directory (see :func:`default_cache_dir`) under
``kernels/``: the ``.deb`` files fetched with ``apt-get download`` and, next to
each, a directory holding only the members extracted from it.

Only the standard library and the Debian tools ``apt-get``, ``dpkg-deb`` and
``tar`` are used. Packages the machine's own apt sources do not carry (bullseye's 5.10, sid's
7.x, experimental's rc) are fetched through a private sources list and state directory under
``kernels/apt/`` naming the suites of `SUITES` on the Debian mirror the machine already uses; the
machine's own sources are never changed.

Package layouts (Debian): up to 6.x the bootable image is ``./boot/vmlinuz-ABI`` in
``linux-image-ABI-unsigned`` (or ``linux-image-ABI``) with the modules beside it and the unstripped
vmlinux ``./usr/lib/debug/boot/vmlinux-ABI`` in ``-dbg``; from 7.x the image is
``./usr/lib/modules/ABI/vmlinuz`` in ``linux-binary-ABI``, the modules are in ``linux-modules-ABI``,
and ``-dbg``'s vmlinux is ``./usr/lib/debug/lib/modules/ABI/vmlinux`` (the ``boot/`` name is a link).
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
from probelint.image.elf import modname_of_file

__all__ = [
    "SUITES",
    "HarnessUnavailable",
    "KernelBundle",
    "debian_mirror",
    "default_cache_dir",
    "ensure_busybox",
    "ensure_deb",
    "ensure_debug_vmlinux",
    "ensure_kernel",
    "extract_members",
    "kernel_abi",
    "list_members",
    "modinfo",
    "private_apt_options",
]


class HarnessUnavailable(RuntimeError):
    """A tool or package needed to boot a kernel cannot be had on this machine."""


_apt_updated = False
_private_updated = False

# Debian suites searched, beyond the machine's own sources, for kernel packages.
SUITES = ("bullseye", "bookworm", "bookworm-backports", "trixie", "sid", "experimental")
_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_DEB_LINE_RE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", re.M)
_URIS_RE = re.compile(r"^URIs:\s*(.+)$", re.M | re.I)


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


def debian_mirror(etc: Path = Path("/etc/apt")) -> str | None:
    """The Debian archive URI the machine's apt sources use (one-line or deb822 form), or None."""
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list")),
             *sorted((etc / "sources.list.d").glob("*.sources"))]
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        uris = _DEB_LINE_RE.findall(text) + [u for line in _URIS_RE.findall(text) for u in line.split()]
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return None


def private_apt_options(kdir: Path, mirror: str | None = None) -> list[str]:
    """apt options that read `SUITES` from a sources list and state directory of our own under
    ``kdir/apt`` (written on first use), leaving the machine's sources and lists alone."""
    mirror = mirror or debian_mirror()
    if mirror is None:
        raise HarnessUnavailable("no Debian mirror in the machine's apt sources to fetch other suites from")
    root = kdir / "apt"
    (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    signed = f"[signed-by={_KEYRING}] " if _KEYRING.exists() else ""
    sources = "".join(f"deb {signed}{mirror} {suite} main\n" for suite in SUITES)
    listing = root / "sources.list"
    if not listing.exists() or listing.read_text() != sources:
        listing.write_text(sources)
    return ["-o", f"Dir::Etc::sourcelist={listing}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={root / 'lists'}", "-o", f"Dir::Cache={root / 'cache'}"]


def _download_private(package: str, kdir: Path) -> subprocess.CompletedProcess[str]:
    """``apt-get download`` through the private sources (their lists fetched once per process)."""
    global _private_updated
    opts = private_apt_options(kdir)
    if not _private_updated:
        _private_updated = True
        upd = _run(["apt-get", *opts, "update"])
        if upd.returncode != 0:
            return upd
    return _run(["apt-get", *opts, "download", package], cwd=kdir)


def ensure_deb(package: str, cache_dir: Path | None = None) -> Path:
    """Return the path of ``package``'s ``.deb`` in the cache, downloading it if needed.

    Runs ``apt-get download`` in the cache directory; when apt does not know the
    package, ``apt-get update`` is run once (per process) and the download retried, then
    the private sources of `SUITES` are tried (`private_apt_options`).
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
    if proc.returncode != 0:
        proc = _download_private(package, kdir)
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
    todo = [m for m in members if not os.path.lexists(dest / m)]  # a link counts, its target aside
    if todo:
        if shutil.which("dpkg-deb") is None:
            raise HarnessUnavailable("dpkg-deb is not available")
        cmd = f"dpkg-deb --fsys-tarfile {_q(deb)} | tar -x -C {_q(dest)} " + " ".join(_q(m) for m in todo)
        proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=False)
        missing = [m for m in todo if not os.path.lexists(dest / m)]
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
    return modname_of_file(name)


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


def _image_members(abi: str) -> tuple[str, ...]:
    """Where a package keeps the bootable image of `abi` (6.x ``boot/``, 7.x ``usr/lib/modules/``)."""
    return (f"./boot/vmlinuz-{abi}", f"./usr/boot/vmlinuz-{abi}", f"./usr/lib/modules/{abi}/vmlinuz")


def _pick_image_package(kernel_package: str, cache_dir: Path | None) -> tuple[Path, str]:
    """The package holding the bootable image, and the image's member name: ``-unsigned``, the
    package itself (<= 6.x), or ``linux-binary-ABI`` (7.x, where linux-image-ABI is a meta package)."""
    abi = kernel_abi(kernel_package)
    base = kernel_package.removesuffix("-unsigned").removesuffix("-dbg")
    wanted = _image_members(abi)
    errors: list[str] = []
    for pkg in (base + "-unsigned", base, f"linux-binary-{abi}"):
        try:
            deb = ensure_deb(pkg, cache_dir)
        except HarnessUnavailable as exc:
            errors.append(str(exc))
            continue
        image = next((m for m in list_members(deb) if m.rstrip("/") in wanted), None)
        if image is not None:
            return deb, image
        errors.append(f"{deb.name} has none of {', '.join(wanted)}")
    raise HarnessUnavailable("; ".join(errors))


def _module_members(deb: Path, abi: str) -> dict[str, tuple[Path, str]]:
    by_key: dict[str, tuple[Path, str]] = {}
    for m in list_members(deb):
        if f"/modules/{abi}/" in m and _KO_RE.search(m):
            by_key.setdefault(_mod_key(m), (deb, m))
    return by_key


def ensure_kernel(kernel_package: str, cache_dir: Path | None = None, modules: list[str] | None = None,
                  optional: list[str] | None = None) -> KernelBundle:
    """Fetch the package with the bootable image (`_pick_image_package`) and extract it and the
    modules (from the same package, or 7.x's ``linux-modules-ABI``).

    ``modules`` are names (``xfs``) or in-package paths; their ``depends=`` are
    followed recursively and returned first (load order). ``optional`` ones are loaded first when
    the kernel ships them as modules and taken as built in otherwise (7.2's cloud flavour builds
    virtio_pci, fuse and virtiofs in; 6.1's has them as modules).
    """
    abi = kernel_abi(kernel_package)
    deb, image = _pick_image_package(kernel_package, cache_dir)
    by_key = _module_members(deb, abi)
    where = deb.name
    if (modules or optional) and not by_key:  # 7.x: the modules are a package of their own
        modules_deb = ensure_deb(f"linux-modules-{abi}", cache_dir)
        by_key, where = _module_members(modules_deb, abi), modules_deb.name
    dest = extract_members(deb, [image])

    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = _mod_key(name)
        if key in seen:
            return
        if key in chain:
            raise HarnessUnavailable(f"module dependency cycle: {' -> '.join((*chain, key))}")
        found = by_key.get(key)
        if found is None:
            raise HarnessUnavailable(f"module {name!r} not found in {where}")
        mod_deb, member = found
        path = _decompressed(extract_members(mod_deb, [member]) / member)
        for dep in filter(None, modinfo(path).get("depends", "").split(",")):
            visit(dep, (*chain, key))
        seen.add(key)
        order.append(path)

    for mod in optional or []:
        if _mod_key(mod) in by_key:
            visit(mod, ())
    for mod in modules or []:
        visit(mod, ())
    return KernelBundle(abi=abi, bzimage=dest / image, modules=order, package=deb.name)


def ensure_debug_vmlinux(kernel_package: str, cache_dir: Path | None = None) -> Path:
    """Fetch ``<kernel_package>-dbg`` (large) and return the path of the unstripped vmlinux: the
    file itself, where the package also carries links to it (5.10..6.x keep it in ``boot/``, 7.x
    in ``lib/modules/ABI/``)."""
    abi = kernel_abi(kernel_package)
    deb = ensure_deb(f"linux-image-{abi}-dbg", cache_dir)
    members = set(list_members(deb))
    for member in (f"./usr/lib/debug/boot/vmlinux-{abi}", f"./usr/lib/debug/lib/modules/{abi}/vmlinux"):
        if member not in members:
            continue
        path = extract_members(deb, [member]) / member
        if not path.is_symlink():
            return path
        target = "./" + os.path.normpath(os.path.join(os.path.dirname(member), os.readlink(path)))
        if target in members:
            return extract_members(deb, [target]) / target
    raise HarnessUnavailable(f"{deb.name} has no unstripped vmlinux for {abi}")


def ensure_busybox(cache_dir: Path | None = None) -> Path:
    """Return a static busybox binary: from the cached ``busybox-static`` package (downloaded if needed)."""
    deb = ensure_deb("busybox-static", cache_dir)
    return extract_members(deb, ["./bin/busybox"]) / "bin" / "busybox"
