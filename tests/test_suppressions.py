import probelint
from tests.conftest import DEMO, rules_fired


def test_suppression_hides_the_finding_not_the_verdict():
    (result,) = probelint.check([DEMO / "demo.elf"], ["demo_read+0x7   # probelint: ignore[KP104]"])
    assert rules_fired(result) == [] and result.verdict.errno == "EILSEQ"


def test_unused_and_unknown_suppressions_are_reported():
    (result,) = probelint.check([DEMO / "demo.elf"], ["demo_read+0x5  # probelint: ignore[kp104, KP999]"])
    assert rules_fired(result) == ["KP403"]
    assert "KP104" in result.findings[0].message and "KP999 (no such rule)" in result.findings[0].message
