"""Errors that stop a run: bad input the user must fix (exit status 2, one line, no traceback)."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(Exception):
    """Unusable input: the message names the file (and line) and says what is wrong."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.detail = message
