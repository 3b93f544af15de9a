from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC __fentry__
    ret
    .p2align 4
FUNC f
    FENTRY
    push %rbp
    movabs $0x1122334455667788, %rax
    lea 0x10(%rdi), %rsi
    pop %rbp
    ret
    .p2align 4
FUNC g
    FENTRY
    push %rbp
    .byte 0xc4          /* a VEX prefix with no valid continuation: undecodable */
    .byte 0xff, 0xff
    pop %rbp
    ret
"""


def test_mid_instruction_offsets(lint):
    results = lint(SOURCE, "f+1", "f+4", "f+7", "f+0xf")
    for r in results:
        assert rules_fired(r) == ["KP104"] and r.verdict.errno == "EILSEQ"
    # names the instruction it falls inside and the boundaries around it
    assert "10-byte instruction at f+0x6" in results[2].findings[0].message
    assert "nearest boundaries: f+0x6, f+0x10" in results[2].findings[0].notes[-1]


def test_every_boundary_is_accepted(lint):
    results = lint(SOURCE, *(f"f+{off}" for off in (5, 6, 0x10, 0x14, 0x15)))
    assert all(r.verdict.registers and "KP104" not in rules_fired(r) for r in results)


def test_decoding_stops_at_undecodable_bytes(lint):
    before, after = lint(SOURCE, "g+5", "g+9")
    assert before.verdict.registers
    assert rules_fired(after) == ["KP104"] and "do not decode" in after.findings[0].message
