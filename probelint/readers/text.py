"""Positions in a source file, kept while its comments or strings are blanked out."""

from __future__ import annotations

import re

from probelint.findings import Location

__all__ = ["blank", "location_at"]


def location_at(file: str, text: str, offset: int) -> Location:
    """Line and column (1-based) of `offset` in `text`."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Location(file, line, column)


def blank(match: re.Match[str]) -> str:
    """The matched text as spaces, its newlines kept: later offsets keep their line and column."""
    return re.sub(r"[^\n]", " ", match.group())
