"""KP110 uncopyable, KP111 unemulated, KP112 15-byte instructions at the probe address."""

from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    int3                                /* f+5 */
    mov %eax, %ss                       /* f+6 (8e d0) */
    jmp *0x10(%rax)                     /* f+8 (ff 60 10) */
    call *%rax                          /* f+0xb: register operand, emulated */
    .byte 0x0f, 0x01, 0xc1              /* f+0xd vmcall */
    .byte 0x0f, 0x0b, 0x78, 0x65, 0x6e  /* f+0x10 Xen emulate prefix ... */
    cpuid                               /* ... folded with cpuid into one instruction */
    /* f+0x17: a 15-byte nop */
    .byte 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
    ret
"""


def test_refused_instructions(lint):
    int3, ss, jmp_mem, vmcall, emulate, long15 = lint(SOURCE, "f+5", "f+6", "f+8", "f+0xd", "f+0x10", "f+0x17")
    assert rules_fired(int3) == ["KP110"] and int3.verdict.errno == "EINVAL"
    assert rules_fired(ss) == ["KP110"]
    assert rules_fired(jmp_mem) == ["KP111"] and jmp_mem.verdict.errno == "EOPNOTSUPP"
    assert rules_fired(vmcall) == ["KP111"]
    assert rules_fired(emulate) == ["KP110"] and "emulate prefix" in emulate.findings[0].message
    assert rules_fired(long15) == ["KP112"] and long15.verdict.errno == "ENOSPC"


def test_emulate_prefix_is_one_instruction(lint):
    (inside,) = lint(SOURCE, "f+0x15")  # the cpuid after the prefix is not a boundary
    assert rules_fired(inside) == ["KP104"]


def test_register_indirect_call_is_emulated(lint):
    (result,) = lint(SOURCE, "f+0xb")
    assert result.verdict.registers and not {"KP110", "KP111", "KP112"} & set(rules_fired(result))
