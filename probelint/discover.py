"""Finding the running kernel's debug image when none is named, where perf and bpftrace look."""

from __future__ import annotations

import os
from pathlib import Path

from probelint.errors import InputError

__all__ = ["candidates", "find_running_kernel_image"]


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
