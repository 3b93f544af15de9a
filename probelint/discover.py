"""Finding the running kernel when no image is named: its -dbg vmlinux where perf and bpftrace
look, else the installed bzImage with its symbols (a real System.map, or /proc/kallsyms when it
shows addresses); and the modules that go with an image."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from probelint.errors import InputError
from probelint.image.elf import MODULE_SUFFIXES, modname, modname_of_file

__all__ = ["candidates", "find_running_kernel", "find_running_kernel_image", "vmlinux_for_module", "vmlinux_places",
           "vmlinuz_candidates"]


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


def vmlinuz_candidates(release: str, root: Path = Path("/")) -> list[Path]:
    """Where distributions install the bzImage: /boot, and usr/lib/modules/R (Fedora, Debian 7.x)."""
    return [root / p.lstrip("/") for p in (f"/boot/vmlinuz-{release}", f"/usr/lib/modules/{release}/vmlinuz",
                                           f"/lib/modules/{release}/vmlinuz")]


def find_running_kernel_image(release: str | None = None, root: Path = Path("/")) -> Path:
    """The running kernel's -dbg vmlinux."""
    release = release or os.uname().release
    for path in candidates(release, root):
        if path.is_file():
            return path
    raise InputError("kernel image", f"none given, and no debug image of the running kernel {release} "
                                  f"was found (Debian: apt install linux-image-{release}-dbg; or pass a vmlinux)")


def find_running_kernel(release: str | None = None, root: Path = Path("/"),
                        kallsyms: Path = Path("/proc/kallsyms")) -> tuple[list[Path], list[str]]:
    """The images of the running kernel (a -dbg vmlinux; else a vmlinuz and its symbols) and, in
    order, why each place before the one taken was not (what -v says)."""
    from probelint.image.symbol_map import SymbolMap, beside

    release = release or os.uname().release
    why: list[str] = []
    for path in candidates(release, root):
        if path.is_file():
            return [path], why
    why.append(f"no -dbg vmlinux of {release} (Debian: apt install linux-image-{release}-dbg; looked where perf "
               "looks: /usr/lib/debug/boot/vmlinux-R, ...)")
    for image in vmlinuz_candidates(release, root):
        if not image.is_file():
            continue
        for symbols in beside(str(image)):
            try:
                SymbolMap(symbols)
            except InputError as exc:
                why.append(f"{symbols}: {exc.detail}")
                continue
            return [image, symbols], why
        if _shows_addresses(kallsyms):
            why.append(f"no System.map of {image}: the running kernel's {kallsyms} gives its symbols")
            return [image, kallsyms], why
        why.append(f"{image}: no System.map beside it, and {kallsyms} hides its addresses (not root)")
        break
    else:
        why.append(f"no vmlinuz of {release} (/boot/vmlinuz-R, /usr/lib/modules/R/vmlinuz)")
    raise InputError("kernel image", "none given, and none of the running kernel found: " + "; ".join(why))


def _shows_addresses(kallsyms: Path) -> bool:
    """/proc/kallsyms as this user reads it: kptr_restrict shows 0 addresses without CAP_SYSLOG.
    The per-CPU symbols come first and the first of them is at 0 even for root (x86-64's
    ``0000000000000000 A fixed_percpu_data``): the first text symbol decides."""
    try:
        with open(kallsyms, "rb") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 3 and fields[1] in (b"T", b"t"):
                    return fields[0].strip(b"0") != b""
    except OSError:
        pass
    return False


def vmlinux_for_module(module: str | Path, release: str) -> Path | None:
    """The vmlinux a module of kernel `release` (its vermagic) is loaded into: the first of
    `vmlinux_places` that is an ELF file (/boot/vmlinux-R may be a compressed image)."""
    for path in vmlinux_places(module, release):
        try:
            if path.is_file():  # never opened otherwise: a FIFO would block
                with open(path, "rb") as fh:
                    if fh.read(4) == b"\x7fELF":
                        return path
        except OSError:
            continue
    return None


def vmlinux_places(module: str | Path, release: str) -> list[Path]:
    """Where the vmlinux of a module of kernel `release` is looked for, in order: in the tree the
    module lies in (an unpacked -dbg package: ROOT/usr/lib/debug/lib/modules/RELEASE/... ->
    ROOT/usr/lib/debug/boot/vmlinux-RELEASE, and perf's other places under ROOT), then on this
    machine."""
    roots = []
    parts = Path(module).absolute().parts
    for k in range(len(parts) - 2):
        if parts[k : k + 3] == ("lib", "modules", release):
            top = Path(*parts[:k])  # ROOT/usr/lib/debug (a -dbg package) or ROOT (a modules tree)
            roots.append(top.parent.parent.parent if top.parts[-3:] == ("usr", "lib", "debug") else top)
            break
    roots.append(Path("/"))
    return [path for root in roots for path in candidates(release, root)]


def default_module_dirs(vmlinux: str) -> list[Path]:
    """The module tree that belongs to a kernel image, when it is there: a Debian -dbg vmlinux's
    debug tree (/usr/lib/debug/boot/vmlinux-R -> /usr/lib/debug/lib/modules/R), else the modules
    as installed (stripped of DWARF, with their .symtab: all the verdicts need):
    /boot/vmlinuz-R -> /lib/modules/R, usr/lib/modules/R/vmlinuz -> that directory."""
    path = Path(vmlinux)
    trees = []
    if path.name in ("vmlinuz", "vmlinux") and path.parent.parent.name == "modules":
        trees.append(path.parent)
    for prefix in ("vmlinux-", "vmlinuz-"):
        if path.parent.name == "boot" and path.name.startswith(prefix):
            release = path.name[len(prefix):]
            trees.append(path.parent.parent / "lib" / "modules" / release)  # the -dbg tree, or beside /boot
            trees += [Path("/lib/modules") / release, Path("/usr/lib/modules") / release]
    for tree in trees:
        if tree.is_dir():
            return [tree]
    return []


def module_files(dirs: list[Path]) -> Iterator[Path]:
    """The module files (``.ko``, compressed or not) under `dirs`, tree by tree."""
    for top in dirs:
        for dirpath, _dirs, files in os.walk(top):
            yield from (Path(dirpath) / file for file in files if file.endswith(MODULE_SUFFIXES))


def find_modules(names: set[str], dirs: list[Path]) -> dict[str, Path]:
    """`MOD.ko` files under `dirs` for the module names wanted (``-`` and ``_`` are the same)."""
    wanted = {modname(n) for n in names}
    found: dict[str, Path] = {}
    for path in module_files(dirs):
        name = modname_of_file(path)
        if name in wanted and name not in found:
            found[name] = path
            if len(found) == len(wanted):
                break
    return found
