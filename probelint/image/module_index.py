"""Which module of a module tree defines a function: KP101's did-you-mean for a function the
vmlinux lacks (``btrfs_file_write_iter`` -> fs/btrfs/btrfs.ko, offered as ``btrfs:SYM`` or
``--loaded btrfs``).

One pass over the tree's symbol tables (~1,000 .ko files in a Debian -dbg tree), made only when a
probe needs it and kept in the cache as data (the modules' paths and their function names), keyed
by the tree's listing (paths, sizes, modification times): a tree that changes is read again.
"""

from __future__ import annotations

import os
import zlib
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from probelint.errors import InputError
from probelint.image.cache_format import IndexFormatError, field, typed_array
from probelint.image.elf import STT_FUNC, ElfFile
from probelint.image.module import module_name

if TYPE_CHECKING:
    from probelint.image.cache import IndexCache

__all__ = ["ModuleNames"]


class ModuleNames:
    """The function names of every module under a tree, by name (built when first asked)."""

    def __init__(self, files: Callable[[], list[Path]], cache: IndexCache | None) -> None:
        self._files = files  # the tree's module files, listed when first needed
        self._cache = cache
        self._modules: list[tuple[str, str]] | None = None  # (module name, path)
        self._of: dict[str, list[int]] = {}

    def modules_with(self, function: str) -> list[tuple[str, str]]:
        """(module name, path) of each module of the tree that defines `function`."""
        if self._modules is None:
            self._build()
        assert self._modules is not None
        return [self._modules[i] for i in self._of.get(function, ())]

    def _build(self) -> None:
        files = sorted(self._files())
        listing = "\n".join(f"{p}\t{s.st_size}\t{s.st_mtime_ns}" for p in files if (s := _stat(p)) is not None)
        key = f"{zlib.crc32(listing.encode()):08x}{len(files):08x}"
        tree = self._cache.load(key) if self._cache is not None else None
        if tree is not None:
            try:
                self._from_tree(tree)
                return
            except IndexFormatError as exc:
                assert self._cache is not None
                self._cache.discard(key, str(exc))
        modules: list[tuple[str, str]] = []
        names: list[str] = []
        owner = array("I")
        for path in files:
            try:
                elf = ElfFile(path)
                functions = {s.name for s in elf.symbols() if s.type == STT_FUNC and s.shndx and s.name}
                modules.append((module_name(elf), str(path)))
            except (InputError, OSError, ValueError):
                continue  # not a module probelint reads: it offers nothing
            names += sorted(functions)
            owner.extend([len(modules) - 1] * len(functions))
        self._set(modules, names, owner)
        if self._cache is not None:
            self._cache.store(key, {"modules": [m for m, _ in modules], "paths": [p for _, p in modules],
                                    "names": names, "owner": owner})

    def _from_tree(self, tree: dict[str, object]) -> None:
        modules, paths = field(tree, "modules", list), field(tree, "paths", list)
        names = field(tree, "names", list)
        owner = typed_array(tree, "owner", "I", len(names))
        if len(paths) != len(modules) or any(i >= len(modules) for i in owner) or not all(
                isinstance(s, str) for s in (*modules, *paths, *names)):
            raise IndexFormatError("module names: inconsistent")
        self._set(list(zip(modules, paths, strict=True)), names, owner)

    def _set(self, modules: list[tuple[str, str]], names: list[str], owner: array) -> None:
        self._modules = modules
        for name, i in zip(names, owner, strict=True):
            self._of.setdefault(name, []).append(i)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None
