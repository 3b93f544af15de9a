from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC __fentry__
    ret
    .p2align 4
FUNC traced
    FENTRY
    push %rbp
    pop %rbp
    ret
    .p2align 4
FUNC untraced
    push %rbp
    pop %rbp
    ret
    .p2align 4
    .type traced.cold, @function
traced.cold:
    ud2
    .p2align 4
    .type untraced.cold, @function
untraced.cold:
    ud2
"""


def test_function_without_fentry_site(lint):
    plain, cold = lint(SOURCE, "untraced+1", "untraced.cold")
    assert rules_fired(plain) == ["KP105"] and plain.verdict.errno == "EINVAL"
    assert rules_fired(cold) == ["KP105"]


def test_traced_function_and_its_cold_piece_pass(lint):
    traced, cold = lint(SOURCE, "traced+5", "traced.cold")
    assert "KP105" not in rules_fired(traced) and traced.verdict.registers
    assert "KP105" not in rules_fired(cold) and cold.verdict.registers  # base name fallback
