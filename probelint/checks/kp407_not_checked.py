"""KP407: a probe in a syntax probelint reads but cannot check (perf lazy patterns, module source
lines, source lines without DWARF).

perf's ``FILE:LINE``, ``FUNC:RLN`` and ``FUNC@SRC`` are resolved through DWARF
(`probelint.readers.perf_lines`); what that model does not cover is reported here instead of
guessed. The engine reports it from the parse result.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    return iter(())


RULE = Rule("KP407", "not-checked", Severity.WARNING, Stage.INPUT, check, "tools/perf/util/probe-finder.c")
