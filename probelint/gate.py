"""The one gate every finding passes, as ruff's `report_diagnostic`: a rule that fired is recorded
on its probe (`ProbeResult.fired`), then reported only if the run selects it and the probe line
does not suppress it, with the severity the configuration gives it.

Rules never append to `ProbeResult.findings` themselves; per-probe hits, input problems and the
set rules alike reach the report through `Gate.emit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from probelint.findings import Finding, Fix, Location, Severity

if TYPE_CHECKING:
    from probelint.checks import ProbeResult, Rule

__all__ = ["Gate"]


class Gate:
    """`select`: the rule ids to report (None: all); `severity`: configured severities by id."""

    __slots__ = ("rules", "select", "severity")

    def __init__(self, rules: Mapping[str, Rule], select: Iterable[str] | None = None,
                 severity: Mapping[str, Severity] | None = None) -> None:
        self.rules = rules
        self.select = frozenset(select) if select is not None else None
        self.severity = dict(severity or {})

    def wanted(self, rule: str) -> bool:
        """Whether a finding of `rule` can be reported at all: a costly message need not be built
        otherwise (the probe map checks millions of boundaries for their verdicts alone)."""
        return self.select is None or rule in self.select

    def emit(self, result: ProbeResult, rule: str, message: str, notes: tuple[str, ...] = (),
             fix: Fix | None = None, *, location: Location | None = None,
             severity: Severity | None = None) -> None:
        """`rule` fired on `result`; `severity` overrides the rule's default for this finding (the
        configuration overrides both), `location` the probe's own."""
        result.fired.add(rule)
        if not self.wanted(rule) or rule in getattr(result.spec, "suppressed", ()):
            return
        level = self.severity.get(rule) or severity or self.rules[rule].severity
        result.findings.append(Finding(rule, level, message, location or result.spec.location, notes, fix))

    def retract(self, result: ProbeResult, rules: frozenset[str]) -> None:
        """Take back what `rules` said of `result`: the set rules found it does not apply (KP404
        and KP405 describe an optimized jump, and the set left the probe an int3 probe)."""
        if result.fired & rules:
            result.fired -= rules
            result.findings = [f for f in result.findings if f.rule not in rules]
