"""``--format github``: GitHub Actions workflow commands, one annotation per finding.

Escaping follows the runner (actions/toolkit `command.ts`): the message escapes ``%``, CR, LF;
property values additionally ``:`` and ``,``.
"""

from __future__ import annotations

from probelint.errors import printable
from probelint.findings import Severity
from probelint.pipeline import Report

__all__ = ["render"]

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _data(text: str) -> str:
    # CR and LF escaped, no second annotation can start; the other controls never reach the log raw
    return printable(text, keep="\r\n").replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def render(report: Report) -> str:
    # the assumption behind every optimization verdict, once, as a run-level notice
    lines = [f"::notice title=probelint::verdicts assume cpu profile {report.cpu_profile} (--cpu-profile)"]
    for result in report:
        for f in result.findings:
            if not report.config.shows(f.severity, f.rule):
                continue  # counted in no summary here: --show-info lists them
            loc = f.location
            body = "\n".join((f.message, *f.notes))
            lines.append(f"::{_LEVEL[f.severity]} file={_prop(loc.file)},line={loc.line},col={loc.column},"
                         f"title={_prop(f'probelint {f.rule}')}::{_data(body)}")
    return "".join(line + "\n" for line in lines)
