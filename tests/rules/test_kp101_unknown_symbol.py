from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    ret
"""


def test_unknown_name_and_stray_address(lint):
    missing, stray = lint(SOURCE, "no_such_function", "0x1000")
    assert rules_fired(missing) == ["KP101"] and missing.verdict.errno == "ENOENT"
    assert rules_fired(stray) == ["KP101"] and stray.verdict.errno == "ENOENT"


def test_known_symbol_and_address_resolve(lint):
    by_name, by_address = lint(SOURCE, "f", "0xffffffff81000000")
    assert by_name.verdict.registers and by_address.context.symbol.name == "f"
    assert "KP101" not in rules_fired(by_address)
