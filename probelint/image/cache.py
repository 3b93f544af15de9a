"""On-disk index of a kernel image, keyed by its GNU build-id and probelint's version.

Parsing a vmlinux symbol table and rebuilding kallsyms costs ~1.5 s; a pre-commit hook runs on
every commit against the same kernel. The index keeps what is derived from the whole file (raw
symbol values, the kallsyms table, the kernel special tables) so that a warm run only maps the
file and decodes the functions its probes touch. Written atomically (temporary file + rename), so
concurrent runs never read half an index; an unreadable or stale index is rebuilt.
"""

from __future__ import annotations

import functools
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

from probelint._version import __version__
from probelint.image.facts import FactStore

__all__ = ["IndexCache", "default_cache_dir"]

_FORMAT = 2  # bump when the indexed facts change shape


@functools.cache
def _code_digest() -> str:
    """Digest of the code that derives indexed facts: an edited checkout never reads a stale index."""
    root = Path(__file__).resolve().parent.parent
    crc = 0  # run on every start: crc32 tells edits apart without loading hashlib
    derived_by = [*root.joinpath("image").glob("*.py"), *root.joinpath("arch", "x86").glob("*.py"),
                  root / "readers" / "perf_lines.py"]  # perf's line model: its results are kept too
    for path in sorted(derived_by):
        crc = zlib.crc32(path.read_bytes(), crc)
    return f"{crc:08x}"


def default_cache_dir() -> Path:
    """``$PROBELINT_CACHE``, else ``$XDG_CACHE_HOME/probelint``, else ``~/.cache/probelint``."""
    env = os.environ.get("PROBELINT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "probelint"


class IndexCache:
    """Index files under ``<cache dir>/index/``; `directory` None disables caching."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory / "index" if directory is not None else None

    def _path(self, build_id: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{build_id}-{__version__}-{_FORMAT}-{_code_digest()}.pickle"

    def fact_store(self, build_id: str | None) -> FactStore | None:
        """Per-function decode facts of this build (image/facts.py), beside the index."""
        path = self._path(build_id) if build_id else None
        return FactStore(path.with_suffix(".facts.sqlite")) if path is not None else None

    def load(self, build_id: str | None) -> dict[str, Any] | None:
        path = self._path(build_id) if build_id else None
        if path is None or not path.is_file():
            return None
        try:
            with open(path, "rb") as fh:
                data = pickle.load(fh)
        # classes that moved or changed shape since the file was written: rebuilt like a torn file
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, ImportError,
                IndexError):
            return None
        return data if isinstance(data, dict) and data.get("build_id") == build_id else None

    def store(self, build_id: str | None, data: dict[str, Any]) -> None:
        path = self._path(build_id) if build_id else None
        if path is None:
            return
        import tempfile  # only a cold run writes the index

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump({**data, "build_id": build_id}, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
            for stale in path.parent.glob(f"{build_id}-*"):  # other versions of probelint's code
                if not stale.name.startswith(path.stem):
                    stale.unlink(missing_ok=True)
        except OSError:
            pass  # a cache that cannot be written only costs time
