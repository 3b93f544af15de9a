from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC __fentry__
    ret
    .p2align 4
FUNC f
    FENTRY
    push %rbp
    pop %rbp
    ret
"""


def test_probe_on_fentry_site(lint):
    (result,) = lint(SOURCE, "f")
    assert rules_fired(result) == ["KP201"]
    assert result.verdict.registers and result.verdict.ftrace and not result.verdict.optimized


def test_probe_after_fentry_site_is_plain(lint):
    (result,) = lint(SOURCE, "f+5")
    assert not result.verdict.ftrace and "KP201" not in rules_fired(result)
