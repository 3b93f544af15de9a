"""A progress line on stderr for long work, shown only on a terminal and never in CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["progress"]

T = TypeVar("T")


def _enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


def progress(items: Iterable[T], total: int, label: str, *, minimum: int = 200) -> Iterator[T]:
    """Yield `items`, drawing ``label [####....] n/total`` while at least `minimum` are expected."""
    if total < minimum or not _enabled():
        yield from items
        return
    step = max(1, total // 100)
    for n, item in enumerate(items, 1):
        if n % step == 0 or n == total:
            filled = 30 * n // total
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {n}/{total}")
            sys.stderr.flush()
        yield item
    sys.stderr.write("\r\033[K")
