"""Positions in a source file, kept while its comments or strings are blanked out."""

from __future__ import annotations

import re
from bisect import bisect_right

from probelint.findings import Location

__all__ = ["Lines", "blank"]


class Lines:
    """Line and column of offsets in one text, by bisecting its line starts: counting newlines
    from the start for every probe made extraction quadratic in the file size."""

    __slots__ = ("_starts", "file")

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        starts = [0]
        find, pos = text.find, text.find("\n")
        while pos != -1:
            starts.append(pos + 1)
            pos = find("\n", pos + 1)
        self._starts = starts

    def location(self, offset: int) -> Location:
        """Line and column (1-based) of `offset`."""
        line = bisect_right(self._starts, offset)
        return Location(self.file, line, offset - self._starts[line - 1] + 1)


def blank(match: re.Match[str]) -> str:
    """The matched text as spaces, its newlines kept: later offsets keep their line and column."""
    return re.sub(r"[^\n]", " ", match.group())
