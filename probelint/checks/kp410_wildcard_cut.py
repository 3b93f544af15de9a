"""KP410: a wildcard matches more functions than probelint checks (`probelint.resolve.MAX_WILDCARD`).

The first matches by name are checked; the others are not, and may fail where the checked ones
register. Reported on the first match, with how many matched and how many were checked.
"""

from __future__ import annotations

from probelint.checks import Emit, ProbeResult, Rule, Stage
from probelint.checks.kp406_wildcard import expansions
from probelint.findings import Severity


def check_set(results: list[ProbeResult], emit: Emit) -> None:
    for glob, members in expansions(results):
        if glob.matches > len(members):
            emit(members[0], "KP410", f"{glob.text} matches {glob.matches} traceable functions: only the first "
                                      f"{len(members)} by name are checked, the other {glob.matches - len(members)} "
                                      f"are not", location=glob.location)


RULE = Rule("KP410", "wildcard-cut", Severity.WARNING, Stage.SET, None,
            "kernel/trace/bpf_trace.c:bpf_kprobe_multi_link_attach", check_set=check_set)
