"""``--format gitlab``: GitLab Code Quality report (a JSON array of issues)."""

from __future__ import annotations

import json

from probelint.findings import Severity
from probelint.pipeline import Report
from probelint.report import fingerprint

__all__ = ["render"]

_SEVERITY = {Severity.ERROR: "major", Severity.WARNING: "minor", Severity.INFO: "info"}


def render(report: Report) -> str:
    issues = [
        {
            "description": f"{f.rule}: {f.message}",
            "check_name": f.rule,
            "fingerprint": fingerprint(f, r.spec.text),
            "severity": _SEVERITY[f.severity],
            "location": {"path": f.location.file, "lines": {"begin": f.location.line}},
            "cpu_profile": report.cpu_profile,  # extra key: GitLab ignores it, scripts can read it
        }
        for r in report
        for f in r.findings
    ]
    return json.dumps(issues, indent=2) + "\n"
