"""probelint: predict, from a kernel ELF, what the kernel does with each kprobe.

    >>> import probelint
    >>> report = probelint.check(["vmlinux"], ["vfs_read+0x1c", "do_sys_open"])
    >>> report[0].verdict.registers, report.failed

`check` is the command line without the printing: the same pipeline (`probelint.pipeline.run`)
with the same defaults, returning the `Report` every reporter in `probelint.report` renders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Config", "__version__", "check", "load_config", "load_kernel"]

if TYPE_CHECKING:
    from probelint.arch.x86.cpu import CpuProfile
    from probelint.image.kernel import Kernel
    from probelint.pipeline import Report


def __getattr__(name: str) -> Any:
    if name in ("Config", "load_config"):  # imported on use: a warm run needs neither
        from probelint import config

        return getattr(config, name)
    raise AttributeError(name)


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


def check(images: Sequence[str | Path] | Kernel, probes: Iterable[str] = (), *, files: Sequence[str | Path] = (),
          config: Any = None, **settings: Any) -> Report:
    """What the command line reports for `probes` (one probe per string, any probe-list syntax)
    followed by the probes of `files` (read as the command line reads them), against the kernel
    `images` (or a loaded `Kernel`, whose CPU profile then applies). `config` (a `Config`, e.g.
    `load_config()` for the project's ``[tool.probelint]``) or keyword settings (``select=["KP1"]``,
    ``cpu_profile="EPYC-Rome"``, ``jobs=4``...) as `Config` takes them; the defaults are the
    command line's, except one process (`jobs=1`)."""
    from probelint.config import Config
    from probelint.pipeline import read_sources, run
    from probelint.readers.spec import parse_text

    if config is None:
        config = Config(**settings)
    elif settings:
        config = Config(**{**vars(config), **settings})
    probes = list(probes)
    sources = list(parse_text("\n".join(probes), "<api>")) if probes else []
    return run(config, images, sources + read_sources(files, config.source_type))
