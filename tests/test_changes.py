"""image/changes.py: the change table answers from the image where it shows the change, else the version."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from probelint.image.changes import CHANGES, applies, applies_to_version, assumptions
from probelint.image.kversion import parse_version

ROOT = Path(__file__).resolve().parent.parent


def test_every_row_a_rule_asks_exists() -> None:
    asked = set()
    for path in (ROOT / "probelint").rglob("*.py"):
        asked |= set(re.findall(r"""\.does\(["']([\w-]+)["']\)""", path.read_text()))
    assert asked and asked <= set(CHANGES), asked - set(CHANGES)
    gates = [p.name for p in (ROOT / "probelint").rglob("*.py") if re.search(r"\.at_least\(\d", p.read_text())]
    assert gates == [], "version gates outside the change table"


def test_every_row_names_its_mainline_commit() -> None:
    """Each row carries the 12-digit id of its upstream commit, and docs/linux-versions.md's table shows
    the same id and first release (the table is written by hand: this keeps it the row's copy)."""
    docs = (ROOT / "docs" / "linux-versions.md").read_text()
    for change in CHANGES.values():
        assert re.fullmatch(r"[0-9a-f]{12}", change.commit), (change.id, change.commit)
        line = next((ln for ln in docs.splitlines() if ln.startswith(f"| `{change.id}` |")), None)
        assert line is not None, f"{change.id} missing from docs/linux-versions.md"
        cells = [c.strip() for c in line.split("|")]
        assert f"({change.commit})" in cells[2], (change.id, cells[2])
        assert cells[3].split()[0] == f"{change.first[0]}.{change.first[1]}", (change.id, cells[3])


def test_stable_backports_count() -> None:
    # 6.1.60+ carries the 6.6 unique-symbol check; 6.1.0 and 5.10 do not
    assert applies_to_version("unique-symbol", parse_version("6.1.192"))
    assert not applies_to_version("unique-symbol", parse_version("6.1.0"))
    assert not applies_to_version("unique-symbol", parse_version("5.10.223"))
    assert applies_to_version("exception-insn", parse_version("7.2.13"))
    assert not applies_to_version("exception-insn", parse_version("6.1.192"))
    assert applies_to_version("unique-symbol", None)  # no version: the 6.1.192 base


def _image(symbols: dict[str, int], sections: tuple[str, ...] = ()) -> SimpleNamespace:
    secs = [SimpleNamespace(name=n, entsize=0) for n in sections]
    elf = SimpleNamespace(sections=secs, section=lambda n: next((s for s in secs if s.name == n), None))
    return SimpleNamespace(is_module=False, raw_symbol=symbols.get, elf=elf)


def test_detector_wins_over_version() -> None:
    # a 6.1 kernel with validate_probe_symbol backported behaves as 6.12 does
    found = applies("validate-probe-symbol", _image({"register_kprobe": 1, "validate_probe_symbol": 2}),
                    parse_version("6.1.192"))
    assert found.value and "validate_probe_symbol" in found.reason
    gone = applies("validate-probe-symbol", _image({"register_kprobe": 1}), parse_version("7.2.13"))
    assert not gone.value
    # no kprobes at all: the image says nothing, the version decides
    assert applies("validate-probe-symbol", _image({}), parse_version("6.12.117")).value


def test_one_warning_outside_the_validated_kernels() -> None:
    assert assumptions(_image({}, (".text", ".altinstructions")), parse_version("6.12.117")) == []
    # 7.3's runtime_const_mask_32 patches an immediate only
    assert assumptions(_image({}, (".text", "runtime_mask___futex_mask")), parse_version("6.12.117")) == []
    newer = assumptions(None, parse_version("7.4.0"))
    assert len(newer) == 1 and "newer than every validated" in newer[0] and "7.3" in newer[0]
    older = assumptions(None, parse_version("5.4.0"))
    assert "older than every validated" in older[0]
    unknown = assumptions(_image({}, (".text", ".new_patch_sites", ".debug_info")), parse_version("6.1.192"))
    assert len(unknown) == 1 and ".new_patch_sites" in unknown[0] and ".debug_info" not in unknown[0]
    assert assumptions(None, None) == []  # fixtures without a banner: -v says what they are taken as


def test_bug_entry_format_layout() -> None:
    # 7.2/7.3 x86-64: bug_entry::format after bug_addr, 16-byte entries; 6.12: 12 bytes
    from probelint.image.tables import TABLES, layout_for

    newer = _image({"register_kprobe": 1, "__warn_args": 2})
    newer.vmlinux = newer
    assert layout_for(TABLES["bug_table"], newer, parse_version("6.12.117")).entry_size == 16
    older = _image({"register_kprobe": 1})
    older.vmlinux = older
    assert layout_for(TABLES["bug_table"], older, parse_version("7.3.0")).entry_size == 12
