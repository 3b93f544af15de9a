"""Every rule has its page, its fixture test, and a module named after it."""

import re

from probelint.checks import all_rules
from probelint.engine import KERNEL_ORDER
from tests.conftest import ROOT


def test_every_rule_has_a_page_named_after_it():
    for rule in all_rules().values():
        page = ROOT / "rules" / f"{rule.id}.md"
        assert page.is_file(), rule.id
        assert page.read_text().splitlines()[0] == f"# {rule.id}: {rule.name}", rule.id


def test_every_page_belongs_to_a_rule():
    pages = {p.stem for p in (ROOT / "rules").glob("*.md")}
    assert pages == set(all_rules())


def test_every_rule_module_is_named_after_its_id():
    modules = {p.stem for p in (ROOT / "probelint" / "checks").glob("kp*.py")}
    for rule in all_rules().values():
        assert any(m.startswith(rule.id.lower() + "_") for m in modules), rule.id


def test_every_rule_is_exercised_by_a_test():
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for rule in all_rules().values():
        assert re.search(rf"\b{rule.id}\b", tests), f"no test mentions {rule.id}"


def test_kernel_order_names_real_rules():
    assert set(KERNEL_ORDER) <= set(all_rules())
