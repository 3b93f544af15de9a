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
    """The first sentence of the page's "What it does" section (the title if there is none)."""
    doc = rule_doc(rule_id) or ""
    if "## What it does" in doc:
        body = doc.split("## What it does", 1)[1].strip().split("\n\n", 1)[0]
        text = " ".join(body.split())
        first = text.split(". ", 1)[0].rstrip(".")
        return first.removeprefix("Flags ").removeprefix("Reports ")
    first = doc.splitlines()[0] if doc else ""
    return first.split(":", 1)[-1].strip() if first.startswith("#") else first
