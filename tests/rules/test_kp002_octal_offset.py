from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    push %rbp
    push %rbx
    push %r12
    pop %r12
    pop %rbx
    pop %rbp
    ret
"""


def test_leading_zero_is_octal(lint):
    (result,) = lint(SOURCE, "f+010")
    assert "KP002" in rules_fired(result)
    assert result.context.address - result.context.symbol.address == 8  # octal 010


def test_hex_and_decimal_are_silent(lint):
    results = lint(SOURCE, "f+0x8", "f+8", "f+0")
    assert not any("KP002" in rules_fired(r) for r in results)
