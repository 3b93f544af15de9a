from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC __fentry__
    ret
    .p2align 4
FUNC handler
    FENTRY
    push %rbp
    pop %rbp
    ret
    .p2align 4
NOKPROBE handler
    .type handler.cold, @function
handler.cold:
    FENTRY
    ud2
    .p2align 4
FUNC normal
    FENTRY
    push %rbp
    pop %rbp
    ret
    .section .noinstr.text, "ax"
FUNC noinstr_fn
    FENTRY
    ret
    .section .entry.text, "ax"
FUNC entry_fn
    FENTRY
    ret
"""


def test_nokprobe_noinstr_entry_and_cold_piece(lint):
    results = lint(SOURCE, "handler+5", "handler+7", "noinstr_fn", "entry_fn", "handler.cold")
    for r in results:
        assert rules_fired(r) == ["KP106"] and r.verdict.errno == "EINVAL", r.findings
    assert "NOKPROBE_SYMBOL(handler)" in results[0].findings[0].message
    assert "base function handler" in results[4].findings[0].message


def test_ordinary_function_is_silent(lint):
    (result,) = lint(SOURCE, "normal+5")
    assert "KP106" not in rules_fired(result) and result.verdict.registers
