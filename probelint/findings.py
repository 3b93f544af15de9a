"""What probelint says about a probe: findings, and the predicted kernel verdict.

A `Finding` is one rule firing on one probe. A `Verdict` is what the kernel is predicted to do
with the probe as a whole (register or not, with which errno; jump-optimized; ftrace-based).
Reporters read these and nothing else.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["Finding", "Fix", "Location", "Severity", "Verdict"]


class Severity(enum.IntEnum):
    """Ordered so that `severity >= fail_level` decides the exit status."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (info, warning, error)") from None


class Location(NamedTuple):
    """Where the user wrote a probe: file (``-`` for stdin), 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Fix(NamedTuple):
    """A rewrite of the probe token (or its removal) that `--fix` can apply (`probelint.fixes`).

    Safe fixes keep what the probe observes (an address spelled as SYM+OFF, an octal offset in
    hex); unsafe ones, applied with --unsafe-fixes, change it: a probe moved, a duplicate removed
    (its handler no longer runs for that probe)."""

    replacement: str  # the new probe token ("" with remove)
    safe: bool
    description: str
    # take the token out with its list separator, where the file's syntax allows (never code)
    remove: bool = False


class Finding(NamedTuple):
    rule: str
    severity: Severity
    message: str
    location: Location
    # Extra lines shown under the message in text output (disassembly excerpt, hints).
    notes: tuple[str, ...] = ()
    fix: Fix | None = None


class Verdict:
    """The kernel's predicted answer for one probe.

    `errno` is the name of the error `register_kprobe()` or the kprobe_events front-end
    returns (``EILSEQ``...), None when the probe registers. `registers` is None when the probe
    could not be checked (a module not given, a probe form not modelled): neither registered nor
    refused.
    """

    # A plain class, as the engine's other mutable records: creating a dataclass costs a warm run
    # ~0.6 ms at import, and `dataclasses` pulls in `inspect`.
    __slots__ = ("errno", "ftrace", "optimized", "reasons", "registers")

    def __init__(self, registers: bool | None = True, errno: str | None = None, optimized: bool | None = False,
                 ftrace: bool = False, reasons: list[str] | None = None) -> None:
        self.registers = registers
        self.errno = errno
        self.optimized = optimized
        self.ftrace = ftrace
        self.reasons: list[str] = reasons if reasons is not None else []

    def __repr__(self) -> str:
        return (f"Verdict(registers={self.registers}, errno={self.errno!r}, optimized={self.optimized}, "
                f"ftrace={self.ftrace}, reasons={self.reasons!r})")

    @property
    def checked(self) -> bool:
        return self.registers is not None

    def unchecked(self, rule: str) -> None:
        self.registers = None
        self.optimized = False
        self.ftrace = False
        self.reasons.append(rule)

    def refuse(self, errno: str, rule: str) -> None:
        self.registers = False
        self.errno = errno
        self.optimized = False
        self.ftrace = False
        self.reasons.append(rule)
