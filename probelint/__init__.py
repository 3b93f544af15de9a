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

from probelint._version import __version__

__all__ = ["Config", "__version__", "check", "load_config", "load_kernel"]

if TYPE_CHECKING:
    from probelint.config import Config, load_config
    from probelint.image.kernel import Kernel, load_kernel
    from probelint.pipeline import Report


def __getattr__(name: str) -> Any:
    # imported on use: a warm run needs no config module, and the image model is loaded by the run
    if name in ("Config", "load_config"):
        from probelint import config

        return getattr(config, name)
    if name == "load_kernel":
        from probelint.image.kernel import load_kernel

        return load_kernel
    raise AttributeError(name)


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
