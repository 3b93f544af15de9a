"""KP403: a ``# probelint: ignore[...]`` comment names a rule that did not fire on its probe.

Reported by the engine after all rules ran (`engine._apply_suppressions`), so stale suppressions
do not outlive the problem they silenced.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    return iter(())  # decided by the engine once every rule has run


RULE = Rule("KP403", "unused-suppression", Severity.WARNING, Stage.INFO, check, "(probelint)")
