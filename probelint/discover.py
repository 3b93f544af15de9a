"""Finding the running kernel's debug image when none is named, where perf and bpftrace look."""

from __future__ import annotations

import os
from pathlib import Path

from probelint.errors import InputError

__all__ = ["candidates", "find_running_kernel_image", "vmlinux_for_module"]


def candidates(release: str, root: Path = Path("/")) -> list[Path]:
    """tools/perf/util/symbol.c vmlinux_path order, plus Debian's -dbg locations."""
    return [root / p.lstrip("/") for p in (
        f"/usr/lib/debug/boot/vmlinux-{release}",
        f"/usr/lib/debug/lib/modules/{release}/vmlinux",
        f"/usr/lib/debug/vmlinux-{release}",
        f"/boot/vmlinux-{release}",
        f"/lib/modules/{release}/build/vmlinux",
        f"/usr/lib/debug/boot/vmlinux-{release}.debug",
    )]


def find_running_kernel_image(release: str | None = None, root: Path = Path("/")) -> Path:
    release = release or os.uname().release
    for path in candidates(release, root):
        if path.is_file():
            return path
    raise InputError("kernel image", f"none given, and no debug image of the running kernel {release} "
                                  f"was found (Debian: apt install linux-image-{release}-dbg; or pass a vmlinux)")


def vmlinux_for_module(module: str | Path, release: str) -> Path | None:
    """The vmlinux a module of kernel `release` (its vermagic) is loaded into: in the tree the
    module lies in (an unpacked -dbg package: ROOT/usr/lib/debug/lib/modules/RELEASE/... ->
    ROOT/usr/lib/debug/boot/vmlinux-RELEASE, and perf's other places under ROOT), then on this
    machine. Only an ELF file counts (/boot/vmlinux-R may be a compressed image)."""
    roots = []
    parts = Path(module).absolute().parts
    for k in range(len(parts) - 2):
        if parts[k : k + 3] == ("lib", "modules", release):
            top = Path(*parts[:k])  # ROOT/usr/lib/debug (a -dbg package) or ROOT (a modules tree)
            roots.append(top.parent.parent.parent if top.parts[-3:] == ("usr", "lib", "debug") else top)
            break
    roots.append(Path("/"))
    for root in roots:
        for path in candidates(release, root):
            try:
                if path.is_file():  # never opened otherwise: a FIFO would block
                    with open(path, "rb") as fh:
                        if fh.read(4) == b"\x7fELF":
                            return path
            except OSError:
                continue
    return None


def default_module_dirs(vmlinux: str) -> list[Path]:
    """The debug module tree that belongs to a Debian -dbg vmlinux, when it is there:
    /usr/lib/debug/boot/vmlinux-R -> /usr/lib/debug/lib/modules/R."""
    path = Path(vmlinux)
    if path.parent.name == "boot" and path.name.startswith("vmlinux-"):
        tree = path.parent.parent / "lib" / "modules" / path.name[len("vmlinux-"):]
        if tree.is_dir():
            return [tree]
    return []


def find_modules(names: set[str], dirs: list[Path]) -> dict[str, Path]:
    """`MOD.ko` files under `dirs` for the module names wanted (``-`` and ``_`` are the same)."""
    wanted = {n.replace("-", "_") for n in names}
    found: dict[str, Path] = {}
    for top in dirs:
        for dirpath, _dirs, files in os.walk(top):
            for file in files:
                if file.endswith((".ko", ".ko.xz", ".ko.gz", ".ko.zst")):
                    name = file.split(".ko", 1)[0].replace("-", "_")
                    if name in wanted and name not in found:
                        found[name] = Path(dirpath) / file
            if len(found) == len(wanted):
                return found
    return found
