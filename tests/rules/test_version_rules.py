"""Rules whose verdict depends on the kernel version and build options (6.1 vs 6.9 / 6.12)."""

from tests.conftest import rules_fired

BODY = """
    .text
FUNC f
    ENDBR
    FENTRY                  /* +4 */
    push %rbp               /* +9 */
    shr $3, %rax            /* +0xa  grp2: boostable from 6.9 */
    mov %rsp, %rbp
    pop %rbp
    ret
    int3                    /* +0x13 */
    ud2                     /* +0x14 */
"""
V61 = 'BANNER "Linux version 6.1.0-56-cloud-amd64 (gcc) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"\n'
V612 = 'BANNER "Linux version 6.12.117+deb12-cloud-amd64 (gcc) #1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1 (2026)"\n'


def test_ibt_entry_moves_to_the_fentry_site(lint):
    plain, four, ret4, one = lint(V612 + BODY, "f", "f+4", "f+4%return", "f+1")
    for r in (plain, four, ret4):
        assert r.verdict.ftrace and r.context.offset == 4, r.findings
    assert rules_fired(one) == ["KP104"]


def test_exception_insns_are_eilseq_from_6_9(lint):
    int3, ud2 = lint(V612 + BODY, "f+0x13", "f+0x14")
    assert rules_fired(int3) == ["KP116"] and int3.verdict.errno == "EILSEQ"
    assert rules_fired(ud2) == ["KP116"]
    # the message cites the change-table row, not a version number of its own
    (message,) = [f.message for f in int3.findings if f.rule == "KP116"]
    assert "change exception-insn" in message and "e884edbb844f" in message and "6.9" in message, message
    old_int3, old_ud2 = lint(V61 + BODY, "f+0x13", "f+0x14")
    assert rules_fired(old_int3) == ["KP110"] and old_int3.verdict.errno == "EINVAL"
    assert old_ud2.verdict.registers  # 6.1 accepts a ud2 that is no BUG site


def test_unknown_symbol_errno_by_version(lint):
    (new,) = lint(V612 + BODY, "no_such_fn")
    (old,) = lint(V61 + BODY, "no_such_fn")
    assert new.verdict.errno == "EINVAL" and old.verdict.errno == "ENOENT"


def test_group_opcodes_boost_from_6_9(lint):
    (new,) = lint(V612 + BODY, "f+0xa")
    (old,) = lint(V61 + BODY, "f+0xa")
    assert new.verdict.optimized
    assert not old.verdict.optimized and "KP207" in rules_fired(old)
