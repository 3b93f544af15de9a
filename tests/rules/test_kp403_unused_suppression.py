import probelint
from tests.conftest import DEMO, rules_fired


def test_suppression_hides_the_finding_not_the_verdict():
    (result,) = probelint.check([DEMO / "demo.elf"], ["demo_read+0x7   # probelint: ignore[KP104]"])
    assert rules_fired(result) == [] and result.verdict.errno == "EILSEQ"


def test_unused_and_unknown_suppressions_are_reported():
    (result,) = probelint.check([DEMO / "demo.elf"], ["demo_read+0x5  # probelint: ignore[kp104, KP999]"])
    assert rules_fired(result) == ["KP403"]
    assert "KP104" in result.findings[0].message and "KP999 (no such rule)" in result.findings[0].message


def test_a_suppressed_rule_that_fired_unreported_is_not_unused():
    # KP104 fires whatever the run selects: the suppression still matched something
    (result,) = probelint.check([DEMO / "demo.elf"], ["demo_read+0x7  # probelint: ignore[KP104]"], select=["KP4"])
    assert rules_fired(result) == [] and result.fired == {"KP104"}


def test_set_rules_pass_the_same_gate():
    # KP409 (a set rule) is suppressed on its line, and counts as used there
    _, second = probelint.check([DEMO / "demo.elf"], ["demo_read+0x6", "demo_read+0x6  # probelint: ignore[KP409]"],
                               hints="never")
    assert "KP409" in second.fired and rules_fired(second) == []
    (dup,) = [r for r in probelint.check([DEMO / "demo.elf"], ["demo_read+0x6", "demo_read+0x6"], ignore=["KP409"])
              if "KP409" in r.fired]
    assert rules_fired(dup) == []  # ignored: fired, not reported
