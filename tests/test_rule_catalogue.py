"""Every rule has its page, its fixture test, and a module named after it."""

import json
import os
import subprocess
import sys

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


def test_every_rule_fires_in_its_fixture_tests(tmp_path):
    """Not its id mentioned somewhere: each rule must fire (`ProbeResult.fired`) in tests/rules/,
    recorded by the tests.firing plugin in a run of those tests."""
    out = tmp_path / "fired.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.firing",
                           "tests/rules"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PROBELINT_FIRED_OUT": str(out), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-2000:]
    fired = json.loads(out.read_text())
    silent = sorted(set(all_rules()) - set(fired))
    assert not silent, f"rules that fire in no test of tests/rules/: {silent}"
    for rule, tests in fired.items():
        assert all(t.startswith("tests/rules/") for t in tests), rule


def test_kernel_order_names_real_rules():
    assert set(KERNEL_ORDER) <= set(all_rules())
