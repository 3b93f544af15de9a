from tests.conftest import rules_fired

# Two compilation units, each with a static `dup`: kallsyms holds two entries of that name.
UNIT_A = """
    .text
FUNC __fentry__
    ret
    .p2align 4
LOCAL_FUNC dup
    FENTRY
    ret
    .p2align 4
"""
UNIT_B = """
    .text
LOCAL_FUNC dup
    FENTRY
    ret
    .p2align 4
"""


def test_plain_name_defined_twice(lint):
    plain, by_address = lint([UNIT_A, UNIT_B], "dup", "0xffffffff81000020")
    assert rules_fired(plain) == ["KP102"] and plain.verdict.errno == "EADDRNOTAVAIL"
    assert by_address.verdict.registers and "KP102" not in rules_fired(by_address)


def test_unique_symbol_is_silent(lint):
    (result,) = lint([UNIT_A], "dup")
    assert "KP102" not in rules_fired(result) and result.verdict.registers
