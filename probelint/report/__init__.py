"""Reporters: one module per output format, each a function of the results only."""

from __future__ import annotations

from probelint.findings import Finding

__all__ = ["fingerprint"]


def fingerprint(finding: Finding, spec_text: str) -> str:
    """Stable across runs and line moves: the rule, the file and the probe as written."""
    import hashlib  # CI formats only: kept off the start-up of every run

    key = f"{finding.rule}\0{finding.location.file}\0{spec_text}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]
