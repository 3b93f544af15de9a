"""KP407: a probe in a syntax probelint reads but cannot check yet (perf source-line probes).

``perf probe FUNC:RLN``, ``FILE:LINE`` and ``FUNC@SRC`` are resolved by perf through DWARF
(tools/perf/util/probe-finder.c); probelint does not resolve them yet, so it says so instead of
guessing. The engine reports it from the parse result.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    return iter(())


RULE = Rule("KP407", "not-checked", Severity.WARNING, Stage.INPUT, check, "tools/perf/util/probe-finder.c")
