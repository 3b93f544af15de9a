"""KP107 jump-label site, KP108 static-call site, KP109 BUG site: refused before can_probe."""

from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC callee
    FENTRY
    ret
    .p2align 4
FUNC f
    FENTRY
    push %rbp           /* f+5 */
    JUMP_LABEL 1f       /* f+6 .. f+0xa */
    STATIC_CALL callee  /* f+0xb .. f+0xf */
    BUG_SITE            /* f+0x10 */
1:  pop %rbp            /* f+0x12 */
    ret
"""


def test_sites_refuse_every_byte(lint):
    results = lint(SOURCE, "f+6", "f+8", "f+0xb", "f+0xd", "f+0x10")
    assert [rules_fired(r) for r in results] == [["KP107"], ["KP107"], ["KP108"], ["KP108"], ["KP109"]]
    assert all(r.verdict.errno == "EINVAL" for r in results)  # even mid-instruction: tested before EILSEQ


def test_neighbours_are_fine(lint):
    results = lint(SOURCE, "f+5", "f+0x12")
    for r in results:
        assert r.verdict.registers and not {"KP107", "KP108", "KP109"} & set(rules_fired(r))
