from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    ret
"""


def test_module_probe_without_module_image(lint):
    (result,) = lint(SOURCE, "xfs:xfs_buf_read_map")
    # deferred by the kernel: not checked, neither "registers" nor "refused"
    assert rules_fired(result) == ["KP402"] and result.verdict.registers is None and not result.verdict.optimized


def test_module_probe_with_module_image(lint):
    (result,) = lint(SOURCE, "k:f", module=True)
    assert "KP402" not in rules_fired(result)
