"""CPU profiles: the features that decide alternatives and apply_retpolines, and the rewrite itself."""

from __future__ import annotations

import pytest

import probelint
from probelint.arch.x86 import cpu
from probelint.arch.x86.cpu import CpuProfile, feature_bits
from probelint.arch.x86.patching import patch_retpoline
from probelint.image.kernel import Kernel

CALL_RAX = bytes.fromhex("e800000000")  # the rel32 is not read: the thunk register is given
JMP_RAX = bytes.fromhex("e900000000")
CS_CALL = bytes.fromhex("2ee800000000")
JE_D32 = bytes.fromhex("0f8400000000")


@pytest.mark.parametrize(("insn", "reg", "expected"), [
    (CALL_RAX, 0, "ffd0" "0f1f00"),  # call *%rax + nop3
    (JMP_RAX, 0, "ffe0" "cc" "6690"),  # jmp *%rax; int3 (SLS) + nop2
    (CALL_RAX, 11, "41ffd3" "6690"),  # REX.B: call *%r11
    (JMP_RAX, 11, "41ffe3" "cc" "90"),
    (CS_CALL, 2, "ffd2" "0f1f4000"),  # the CS prefix is dropped with the rest
    (JE_D32, 0, "7504" "ffe0" "cc" "90"),  # jne.d8 over jmp *%rax
])
def test_patch_retpoline_without_retpoline(insn: bytes, reg: int, expected: str):
    assert patch_retpoline(0xFFFFFFFF81000020, insn, reg) == bytes.fromhex(expected)


def test_patch_retpoline_lfence_only_where_it_fits():
    assert patch_retpoline(0x1000, CALL_RAX, 0, lfence=True) == bytes.fromhex("0faee8" "ffd0")
    assert patch_retpoline(0x1000, CALL_RAX, 11, lfence=True) is None  # 6 bytes in 5: site left alone
    assert patch_retpoline(0x1000, CS_CALL, 11, lfence=True) == bytes.fromhex("0faee8" "41ffd3")


def test_patch_retpoline_its_thunk_in_the_lower_half_line():
    thunk = 0xFFFFFFFFA0000000
    lower = patch_retpoline(0xFFFFFFFF81000000, CALL_RAX, 0, its_thunk=thunk)  # branch byte at +1: bit 5 clear
    assert lower[:1] == b"\xe8" and 0xFFFFFFFF81000005 + int.from_bytes(lower[1:], "little", signed=True) == thunk
    upper = patch_retpoline(0xFFFFFFFF81000020, CALL_RAX, 0, its_thunk=thunk)
    assert upper == bytes.fromhex("ffd00f1f00")
    jcc = patch_retpoline(0xFFFFFFFF81000000, JE_D32, 0, its_thunk=thunk)  # the jcc stays a jcc to the thunk
    assert jcc[:2] == b"\x0f\x84" and 0xFFFFFFFF81000006 + int.from_bytes(jcc[2:], "little", signed=True) == thunk


def test_profile_names_and_aliases():
    assert CpuProfile("ret") is CpuProfile.QEMU64 is CpuProfile.RET
    assert CpuProfile("rethunk") is CpuProfile.EPYC_ROME and CpuProfile("its") is CpuProfile.SKYLAKE_CLIENT_V4
    assert set(cpu.PROFILE_NAMES) >= {"ret", "rethunk", "its", "qemu64", "EPYC-Rome", "Skylake-Client-v4"}
    assert len({p.cache_key for p in CpuProfile}) == len(CpuProfile)


def test_profile_for_qemu_models_and_command_lines():
    from probelint.vmtest.compare import profile_for

    assert profile_for("Skylake-Client-v4") is CpuProfile.SKYLAKE_CLIENT_V4
    assert profile_for("qemu64") is CpuProfile.QEMU64
    assert profile_for("qemu64", "quiet spectre_v2=off") is CpuProfile.NORETPOLINE


@pytest.mark.kernel
def test_every_named_feature_resolves_in_the_debian_vmlinux(debian_kernel: Kernel):
    vmlinux = debian_kernel.vmlinux
    for profile in CpuProfile:
        m = profile.model
        assert len(feature_bits(vmlinux, profile)) == len(m.flags.split()) + len(m.bugs.split()) + len(m.synthetic)
    rep_good, erms = 3 * 32 + 16, 9 * 32 + 9  # cpufeatures.h X86_FEATURE_REP_GOOD, X86_FEATURE_ERMS
    assert rep_good in feature_bits(vmlinux, CpuProfile.QEMU64)
    assert erms in feature_bits(vmlinux, CpuProfile.SKYLAKE_CLIENT_V4)
    assert erms not in feature_bits(vmlinux, CpuProfile.EPYC_ROME)


@pytest.fixture
def profiled(debian_kernel: Kernel) -> Kernel:
    assert debian_kernel.profile is cpu.DEFAULT_PROFILE
    return debian_kernel


@pytest.mark.kernel
def test_skylake_alternative_makes_the_window_copyable(profiled: Kernel):
    # The probe the "all features absent" model got wrong on Skylake-Client-v4 (docs/validation.md)
    spec = ["finish_task_switch.isra.0+0x1fa"]
    assert not probelint.check(profiled, spec)[0].verdict.optimized
    profiled = profiled.with_profile(CpuProfile.SKYLAKE_CLIENT_V4)
    assert probelint.check(profiled, spec)[0].verdict.optimized


@pytest.mark.kernel
def test_noretpoline_moves_boundaries_inside_a_thunk_call(profiled: Kernel):
    vmlinux = profiled.vmlinux
    low_thunks = vmlinux.raw_symbol("__x86_indirect_thunk_array") + 32 * 8  # %rax..%rdi: call *%reg is 2 bytes

    def target(a: int) -> int:
        return a + 5 + int.from_bytes(vmlinux.read(a + 1, 4), "little", signed=True)

    site = next(e["addr"] for e in vmlinux.table("retpoline_sites")
                if vmlinux.read(e["addr"], 1) == b"\xe8" and target(e["addr"]) < low_thunks)
    sym = vmlinux.lookup(site)
    specs = [f"{sym.name}+{site - sym.address + off:#x}" for off in (1, 2)]
    assert [r.verdict.errno for r in probelint.check(profiled, specs)] == ["EILSEQ", "EILSEQ"]
    profiled = profiled.with_profile(CpuProfile.NORETPOLINE)  # call *%reg, then a 3-byte NOP at +2
    results = probelint.check(profiled, specs)
    assert results[0].verdict.errno == "EILSEQ" and "KP104" not in [f.rule for f in results[1].findings]


def test_report_schema_names_every_profile():
    """JSON reports carry the profile by its CPU's name; the schema must accept exactly those."""
    import json
    from pathlib import Path

    import probelint

    schema = json.loads((Path(probelint.__file__).parent / "schema" / "report.schema.json").read_text())
    assert set(schema["$defs"]["report"]["properties"]["cpu_profile"]["enum"]) == {p.value for p in CpuProfile}
    assert CpuProfile("rethunk").value == "EPYC-Rome"  # aliases are reported by the CPU's name
