from tests.conftest import rules_fired

SIMPLE = """
    .text
FUNC f
    FENTRY
    ret
"""


def test_fires_on_garbage_and_bad_offsets(lint):
    results = lint(SIMPLE, "two probes here", "f+", "f+0x", "f%entry", "f-4", "f+0x100000000", ":f")
    assert all(rules_fired(r) == ["KP001"] for r in results)
    assert all(r.verdict.errno == "EINVAL" and not r.verdict.registers for r in results)


def test_silent_on_every_accepted_syntax(lint):
    results = lint(SIMPLE, "f", "f+0", "f%return", "p:grp/ev f arg=%di", "r4:ev f", "kprobe:f", "kretprobe:f")
    assert not any("KP001" in rules_fired(r) for r in results)
