from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC __fentry__
    ret
    .p2align 4
FUNC f
    FENTRY
    ret
    .p2align 4
FUNC g
    FENTRY
    push %rbp
    pop %rbp
    ret
"""


def test_offset_rebased_into_next_symbol(lint):
    (result,) = lint(SOURCE, "f+0x15")
    assert "KP401" in rules_fired(result)
    assert result.context.symbol.name == "g" and result.context.offset == 5


def test_offset_inside_padding_stays_in_function(lint):
    # f+0x8 is alignment padding after f's ret: kallsyms counts it as part of f
    (result,) = lint(SOURCE, "f+0x6")
    assert "KP401" not in rules_fired(result) and result.context.symbol.name == "f"
