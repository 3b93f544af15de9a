from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC first          /* so that _stext is not an alias of __pfx_f */
    ret
    .p2align 4
FUNC __pfx_f
    nop
    nop
    nop
    nop
FUNC f
    FENTRY
    push %rbp
    pop %rbp
    ret
    .p2align 4
FUNC __switch_to
    FENTRY
    push %rbp
    pop %rbp
    ret
"""


def test_preamble_symbol(lint):
    (result,) = lint(SOURCE, "__pfx_f+1")  # untraced padding: the notrace test refuses it first
    assert rules_fired(result) == ["KP105"] and result.verdict.errno == "EINVAL"


def test_preamble_address_through_register_kprobe(lint):
    # a traced preamble (an ftrace site in it) gets past the notrace test: KP114 decides
    source = SOURCE.replace("FUNC __pfx_f\n    nop\n    nop\n    nop\n    nop", "FUNC __pfx_f\n    FENTRY")
    (result,) = lint(source, "__pfx_f")
    assert rules_fired(result) == ["KP114"]


def test_switch_to_return_probe(lint):
    ret, entry = lint(SOURCE, "__switch_to%return", "__switch_to")
    assert rules_fired(ret) == ["KP115"] and ret.verdict.errno == "EINVAL"
    assert entry.verdict.registers


def test_ordinary_function(lint):
    (result,) = lint(SOURCE, "f%return")
    assert result.verdict.registers and not {"KP114", "KP115"} & set(rules_fired(result))
