"""KP403: a ``# probelint: ignore[...]`` comment names a rule that did not fire on its probe.

An audit rule: it runs after every other rule, set rules included, and reads which rules fired on
each probe (`ProbeResult.fired`, recorded by the gate whether or not the finding was reported), so
stale suppressions do not outlive the problem they silenced.
"""

from __future__ import annotations

from probelint.checks import Emit, ProbeResult, Rule, Stage, all_rules
from probelint.findings import Severity
from probelint.readers.spec import ProbeSpec


def check_set(results: list[ProbeResult], emit: Emit) -> None:
    for result in results:
        spec = result.spec
        if not isinstance(spec, ProbeSpec) or not spec.suppressed:
            continue
        unused = sorted(spec.suppressed - result.fired)
        if unused:
            known = all_rules()
            what = ", ".join(f"{r} (no such rule)" if r not in known else r for r in unused)
            emit(result, "KP403", f"unused suppression: {what} did not fire on this probe")


RULE = Rule("KP403", "unused-suppression", Severity.WARNING, Stage.AUDIT, None, "(probelint)", check_set=check_set)
