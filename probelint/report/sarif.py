"""``--format sarif``: SARIF 2.1.0, with the rule catalogue built from rules/ pages."""

from __future__ import annotations

import json
from typing import Any

from probelint._version import __version__
from probelint.checks import all_rules
from probelint.findings import Severity
from probelint.pipeline import Report
from probelint.report import fingerprint
from probelint.ruledocs import rule_doc, rule_summary

__all__ = ["render"]

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
HELP_URI = "https://github.com/probelint/probelint/blob/main/rules/{id}.md"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _rules() -> list[dict[str, Any]]:
    out = []
    for rule in all_rules().values():
        doc = rule_doc(rule.id) or rule.name
        out.append({
            "id": rule.id,
            "name": rule.name,
            "shortDescription": {"text": rule_summary(rule.id) or rule.name},
            "fullDescription": {"text": f"{rule.name}: decided by {rule.kernel_function}"
                                        + (f" ({rule.errno})" if rule.errno else "")},
            "help": {"text": doc, "markdown": doc},
            "helpUri": HELP_URI.format(id=rule.id),
            "defaultConfiguration": {"level": _LEVEL[rule.severity]},
            "properties": {"kernelFunction": rule.kernel_function, "errno": rule.errno},
        })
    return out


def render(report: Report) -> str:
    rules = _rules()
    index = {r["id"]: i for i, r in enumerate(rules)}
    sarif_results = []
    for r in report:
        for f in r.findings:
            sarif_results.append({
                "ruleId": f.rule,
                "ruleIndex": index[f.rule],
                "level": _LEVEL[f.severity],
                "message": {"text": "\n".join((f.message, *f.notes))},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": f.location.file},
                    "region": {"startLine": f.location.line, "startColumn": f.location.column},
                }}],
                "partialFingerprints": {"probelint/v1": fingerprint(f, r.spec.text)},
                "properties": {"probe": r.spec.text, "registers": r.verdict.registers, "errno": r.verdict.errno,
                               "optimized": r.verdict.optimized, "ftrace": r.verdict.ftrace},
            })
    log = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "probelint", "version": __version__, "semanticVersion": __version__,
                                "informationUri": "https://github.com/probelint/probelint", "rules": rules}},
            "results": sarif_results,
            "properties": {
                "cpuProfile": report.cpu_profile,
                "kernelImages": [{"path": i.path, "buildId": i.elf.build_id(), "version": i.version}
                                 for i in report.kernel.images],
                **({"unvalidatedKernel": report.unvalidated} if report.unvalidated else {}),
            },
        }],
    }
    return json.dumps(log, indent=2) + "\n"
