"""Errors that stop a run: bad input the user must fix (exit status 2, one line, no traceback);
and what every line probelint prints about a file goes through: `printable`."""

from __future__ import annotations

import functools
import re
import sys

__all__ = ["InputError", "printable", "warn"]


class InputError(Exception):
    """Unusable input: the message names the file (and line) and says what is wrong."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.detail = message


# C0/C1 controls (ESC starts terminal sequences, CR/LF forge lines), DEL, bidirectional overrides and
# isolates (text shown in another order than it reads), line/paragraph separators, lone surrogates
# (file names that are not UTF-8): everything a file name or probe text could use to rewrite a terminal
# (compiled when first needed: 0.5 ms of every start, and a JSON report prints no text)
@functools.cache
def _unprintable() -> re.Pattern[str]:
    return re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep: str = "") -> str:
    """`text` safe to print to a terminal or a log: control and invisible-direction characters as
    ``\\xNN`` / ``\\uNNNN`` escapes (those in `keep`, such as a newline between lines, are kept)."""
    return _unprintable().sub(lambda m: m.group() if m.group() in keep else _escape(m), text)


def warn(where: str, message: str) -> None:
    """One warning line on stderr that does not stop the run."""
    print(f"probelint: warning: {printable(f'{where}: {message}')}", file=sys.stderr)
