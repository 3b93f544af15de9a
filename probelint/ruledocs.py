"""Rule pages (rules/<ID>.md): found in the installed package, or beside the source tree."""

from __future__ import annotations

from pathlib import Path

__all__ = ["rule_doc", "rule_summary", "rules_dir"]


def rules_dir() -> Path:
    installed = Path(__file__).parent / "_rules"
    return installed if installed.is_dir() else Path(__file__).parent.parent / "rules"


def rule_doc(rule_id: str) -> str | None:
    path = rules_dir() / f"{rule_id.upper()}.md"
    return path.read_text() if path.is_file() else None


def rule_summary(rule_id: str) -> str:
    """The page's title line without the ``# ID:`` prefix."""
    doc = rule_doc(rule_id) or ""
    first = doc.splitlines()[0] if doc else ""
    return first.split(":", 1)[-1].strip() if first.startswith("#") else first
