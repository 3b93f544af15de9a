"""On-disk index of a kernel image, keyed by its GNU build-id and probelint's version.

Parsing a vmlinux symbol table and rebuilding kallsyms costs ~1.5 s; a pre-commit hook runs on
every commit against the same kernel. The index keeps what is derived from the whole file (raw
symbol values, the kallsyms table, the kernel special tables) so that a warm run only maps the
file and decodes the functions its probes touch.

The index is data, never code (image/cache_format.py), in a directory that is the user's alone
(image/cachefs.py). A file that fails its checksum, its size limits or its schema is discarded and
rebuilt with one line on stderr; it is never trusted and never fatal.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import zlib
from pathlib import Path
from typing import Any

from probelint._version import __version__
from probelint.image.cache_format import decode, encode
from probelint.image.cachefs import CacheDir, note
from probelint.image.facts import FactStore

__all__ = ["IndexCache", "default_cache_dir"]

_FORMAT = 5  # bump when the indexed facts change shape
_LIMIT = 256 << 20  # a full Debian kernel's index is 7 MB: a larger file is not read
_BUILD_ID = re.compile(r"[0-9a-f]{2,128}")


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
    """Index files under ``<cache dir>/<sub>/``; `directory` None disables caching."""

    def __init__(self, directory: str | Path | None, sub: str = "index") -> None:
        self.root = Path(directory) if directory is not None else None
        self.sub = sub
        self._dir: CacheDir | None = None
        self._opened = False

    @property
    def directory(self) -> CacheDir | None:
        """The checked directory, opened when first needed; None if refused or unusable."""
        if not self._opened:
            self._opened = True
            self._dir = CacheDir.open(self.root, self.sub) if self.root is not None else None
        return self._dir

    def _name(self, build_id: str | None) -> str | None:
        if build_id is None or not _BUILD_ID.fullmatch(build_id) or self.directory is None:
            return None
        return f"{build_id}-{__version__}-{_FORMAT}-{_code_digest()}.index"

    def fact_store(self, build_id: str | None) -> FactStore | None:
        """Per-function decode facts of this build (image/facts.py), beside the index."""
        name = self._name(build_id)
        directory = self.directory
        return FactStore(directory, name.removesuffix(".index") + ".facts.sqlite") if name and directory else None

    def load(self, build_id: str | None) -> Any:
        """The stored tree, or None (absent, refused, or discarded with a line)."""
        name = self._name(build_id)
        directory = self.directory
        if name is None or directory is None:
            return None
        try:
            data = directory.read(name, _LIMIT)
            return decode(data) if data is not None else None
        except PermissionError:
            self._dir = None  # another user's file: the cache is refused, not cleaned
            return None
        except (ValueError, OSError) as exc:
            self._discard(directory, name, str(exc))
            return None

    def discard(self, build_id: str | None, why: str) -> None:
        """Remove the index of `build_id` whose content failed its schema (one line)."""
        name = self._name(build_id)
        if name is not None and self.directory is not None:
            self._discard(self.directory, name, why)

    @staticmethod
    def _discard(directory: CacheDir, name: str, why: str) -> None:
        note(f"cache file {directory.shown(name)}: {why}: discarded, rebuilt")
        with contextlib.suppress(OSError):
            directory.remove(name)

    def store(self, build_id: str | None, tree: Any) -> None:
        name = self._name(build_id)
        directory = self.directory
        if name is None or directory is None or build_id is None:
            return
        try:
            directory.write(name, encode(tree))
            directory.remove_stale(f"{build_id}-", name.removesuffix(".index"))
        except OSError:
            pass  # a cache that cannot be written only costs time
