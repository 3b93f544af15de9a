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


RENAMED = """
    .text
FUNC __fentry__
    ret
    .p2align 4
    .type finish_switch.isra.0, @function
finish_switch.isra.0:
    FENTRY
    ret
    .p2align 4
    .type finish_switch.cold, @function
finish_switch.cold:
    ud2
    .p2align 4
FUNC __x64_sys_read
    FENTRY
    ret
"""


def test_did_you_mean_a_compiler_clone_or_a_syscall_wrapper(lint):
    clone, syscall, plain = lint(RENAMED, "finish_switch+4", "sys_read", "vfs_read")
    assert rules_fired(clone) == ["KP101"] and "did you mean finish_switch.isra.0?" in clone.findings[0].notes[0]
    assert clone.findings[0].fix.replacement == "finish_switch.isra.0+4" and not clone.findings[0].fix.safe
    assert syscall.findings[0].fix.replacement == "__x64_sys_read"
    assert plain.findings[0].fix is None and not plain.findings[0].notes


def test_module_symbol_validated_while_parsing(build_kernel):
    """>= 6.12 validate_probe_symbol: MOD:SYM of a loaded module that has no SYM (its init function,
    gone from kallsyms once live) is EINVAL, not register_kprobe()'s ENOENT (booted 7.2)."""
    import probelint

    vmlinux = build_kernel(".text\nFUNC validate_probe_symbol\n    FENTRY\n    ret\n")
    module = build_kernel('.text\nFUNC mod_fn\n    FENTRY\n    ret\n    .section .modinfo\n    .asciz "name=mymod"\n',
                          module=True)
    (result,) = probelint.check([vmlinux, module], ["mymod:no_such_fn"], hints="never")
    assert rules_fired(result) == ["KP101"] and result.verdict.errno == "EINVAL"
