"""probelint: predict, from a kernel ELF, what the kernel does with each kprobe.

    >>> import probelint
    >>> results = probelint.check(["vmlinux"], ["vfs_read+0x1c", "do_sys_open"])
    >>> results[0].verdict.registers

`check` is what the command line runs; reporters in `probelint.report` turn its results into
text, JSON and CI formats.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["__version__", "check", "load_kernel"]

if TYPE_CHECKING:
    from probelint.arch.x86.cpu import CpuProfile
    from probelint.engine import ProbeResult
    from probelint.image.kernel import Kernel


def load_kernel(images: Sequence[str | Path], *, profile: CpuProfile | str | None = None,
                dotconfig: str | Path | None = None, cache_dir: Path | None = None, cache: bool = False) -> Kernel:
    """A vmlinux and/or modules (.ko) that will be live together, as booted on the CPU `profile`
    (default: `probelint.arch.x86.cpu.DEFAULT_PROFILE`). `dotconfig`: the kernel's .config, whose
    options override those inferred from the vmlinux. With `cache`, whole-file facts are kept in a
    build-id index under `cache_dir` (default: ``~/.cache/probelint``)."""
    from probelint.arch.x86.cpu import DEFAULT_PROFILE, CpuProfile
    from probelint.errors import InputError
    from probelint.image.cache import IndexCache, default_cache_dir
    from probelint.image.kernel import Kernel

    config_text = None
    if dotconfig is not None:
        try:
            config_text = (Path(dotconfig).read_text(errors="replace"), str(dotconfig))
        except OSError as exc:
            raise InputError(str(dotconfig), f"cannot read: {exc.strerror}") from None
    index = IndexCache(cache_dir or default_cache_dir()) if cache else None
    return Kernel.load(images, profile=CpuProfile(profile or DEFAULT_PROFILE), dotconfig=config_text, cache=index)


def check(images: Sequence[str | Path] | Kernel, probes: Iterable[str], *, source: str = "<api>") -> list[ProbeResult]:
    """Verdicts and findings for `probes` (one probe per string, any accepted syntax)."""
    from probelint.engine import check_probes
    from probelint.image.kernel import Kernel
    from probelint.readers.spec import parse_text

    kernel = images if isinstance(images, Kernel) else load_kernel(images)
    parsed = list(parse_text("\n".join(probes), source))
    return check_probes(kernel, parsed)
