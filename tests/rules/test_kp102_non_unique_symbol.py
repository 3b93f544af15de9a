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


def test_module_symbol_defined_twice_in_its_module(build_kernel):
    """>= 6.12 validate_module_probe_symbol counts MOD:SYM in MOD: two static copies of one inline
    function (xfs:uuid_copy on the booted 7.2: "The symbol is not unique"); 6.1.y does not count."""
    import probelint

    modinfo = '    .section .modinfo\n    .asciz "name=mymod"\n'
    module = build_kernel([UNIT_B + "LOCAL_FUNC once\n    FENTRY\n    ret\n" + modinfo, UNIT_B], module=True)
    new = build_kernel(".text\nFUNC validate_probe_symbol\n    FENTRY\n    ret\n")
    dup, once = probelint.check([new, module], ["mymod:dup", "mymod:once"], hints="never")
    assert rules_fired(dup) == ["KP102"] and dup.verdict.errno == "EINVAL"
    assert "in module mymod" in dup.findings[0].message
    assert "KP102" not in rules_fired(once) and once.verdict.registers
    (old,) = probelint.check([build_kernel(UNIT_A), module], ["mymod:dup"], hints="never")
    assert "KP102" not in rules_fired(old) and old.verdict.registers


def test_vmlinux_symbol_counts_alone_from_7_1(build_kernel):
    """number_of_same_symbols(NULL, SYM) from 7.1 (1870ddcd94b0, stable 7.0.10) returns the vmlinux's
    count when the vmlinux has the name: a loaded module's copy no longer makes a plain SYM "not unique"
    (the booted 7.2.13 registers cts_cbc_encrypt with aesni_intel loaded); a name only modules hold
    is still counted in them, and 6.12 counts both."""
    import probelint

    modinfo = '    .section .modinfo\n    .asciz "name=mymod"\n'
    module = build_kernel(UNIT_B + "LOCAL_FUNC only_here\n    FENTRY\n    ret\n" + modinfo, module=True)
    other = build_kernel(UNIT_B.replace("dup", "only_here") + '    .section .modinfo\n    .asciz "name=other"\n',
                         module=True)
    body = ".text\nFUNC validate_probe_symbol\n    FENTRY\n    ret\n" + UNIT_B

    def check(version: str) -> dict[str, object]:
        vmlinux = build_kernel(f'BANNER "Linux version {version} (gcc) #1 SMP"\n' + body)
        results = probelint.check([vmlinux, module, other], ["dup", "only_here"], hints="never")
        return {r.spec.symbol: r for r in results}

    for version in ("7.2.13", "7.1.0", "7.0.10"):
        found = check(version)
        assert "KP102" not in rules_fired(found["dup"]) and found["dup"].verdict.registers, version
        assert rules_fired(found["only_here"]) == ["KP102"], version  # two modules, no vmlinux copy
    for version in ("6.12.117", "7.0.9"):
        dup = check(version)["dup"]
        assert rules_fired(dup) == ["KP102"] and dup.verdict.errno == "EINVAL", version
        assert "1 in vmlinux, 1 in mymod" in dup.findings[0].message
