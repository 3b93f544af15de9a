from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC __fentry__
    ret
    .section .exit.text, "ax"
FUNC exit_fn
    FENTRY
    ret
"""


def test_traced_function_outside_core_text(lint):
    # .exit.text lies outside [_stext, _etext): its fentry site passes the notrace test, the
    # text test refuses it.
    (result,) = lint(SOURCE, "exit_fn")
    assert rules_fired(result) == ["KP103"] and result.verdict.errno == "EINVAL"
    assert ".exit.text" in result.findings[0].message


def test_core_text_is_silent(lint):
    (result,) = lint(SOURCE, "__fentry__")
    assert "KP103" not in rules_fired(result)
