"""Kernel version detection and build-option inference (probelint/image/version.py)."""

from __future__ import annotations

import pytest

from probelint.image.kernel import open_image
from probelint.image.tables import TABLES, layout_for, read_table
from probelint.image.version import KernelVersion, infer_config, kconfig_name, parse_config, parse_version

BANNER_61 = ("Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) "
             "12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)")
BANNER_612 = ("Linux version 6.12.117+deb12-cloud-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-12 "
              "(Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC "
              "Debian 6.12.117-1~deb12u1 (2026-11-14)")


def test_debian_banner_takes_patch_level_from_package_version() -> None:
    v = parse_version(BANNER_61)
    assert v is not None
    assert (v.major, v.minor, v.patch) == (6, 1, 192)
    assert v.debian_version == "6.1.192-2"  # not gcc's "Debian 12.2.0-14+deb12u1"
    assert v.release == "6.1.0-56-cloud-amd64"
    v12 = parse_version(BANNER_612)
    assert v12 is not None and v12.key == (6, 12, 117) and v12.debian_version == "6.12.117-1~deb12u1"


def test_vermagic_and_other_distributions() -> None:
    v = parse_version("6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions ")
    assert v is not None and v.key == (6, 1, 0) and v.debian_version is None
    ubuntu = parse_version("Linux version 6.8.0-45-generic (buildd@lcy02) (x86_64-linux-gnu-gcc-13 ...) #45-Ubuntu SMP")
    assert ubuntu is not None and ubuntu.key == (6, 8, 0)
    assert parse_version("6.11.4-301.fc41.x86_64").key == (6, 11, 4)
    assert parse_version("Linux version 6.9 (x@y)").key == (6, 9, 0)
    assert parse_version("not a kernel") is None
    assert parse_version("") is None


def test_comparisons() -> None:
    v61, v612 = parse_version(BANNER_61), parse_version(BANNER_612)
    assert v61 is not None and v612 is not None
    assert v61 < v612 and v612 > v61 and v61 != v612
    assert v612 >= (6, 9) and v61 < (6, 9) and v612 >= (6,) and v61 == (6, 1, 192)
    assert v612.at_least(6, 6) and not v61.at_least(6, 6)
    assert v612.series() == (6, 12)
    assert KernelVersion(6, 1, 192) == v61  # raw/release do not take part
    assert str(v61) == "6.1.192 (Debian 6.1.192-2)"
    with pytest.raises(TypeError):
        _ = v61 < "6.2"  # type: ignore[operator]


def test_kconfig_names_follow_the_6_9_rename() -> None:
    assert kconfig_name("RETPOLINE", parse_version(BANNER_61)) == "RETPOLINE"
    assert kconfig_name("RETPOLINE", parse_version(BANNER_612)) == "MITIGATION_RETPOLINE"
    assert kconfig_name("X86_KERNEL_IBT", parse_version(BANNER_612)) == "X86_KERNEL_IBT"


def test_parse_config() -> None:
    cfg = parse_config("CONFIG_OPTPROBES=y\n# CONFIG_KPROBE_EVENTS_ON_NOTRACE is not set\nCONFIG_X=\"a=b\"\n")
    assert cfg == {"CONFIG_OPTPROBES": "y", "CONFIG_KPROBE_EVENTS_ON_NOTRACE": "n", "CONFIG_X": '"a=b"'}


def test_alt_instr_layout_depends_on_version() -> None:
    table = TABLES["alt_instructions"]
    assert layout_for(table, None, None) is table
    assert layout_for(table, None, parse_version(BANNER_61)).entry_size == 12
    assert layout_for(table, None, parse_version(BANNER_612)).entry_size == 14


def test_fixture_kernel_without_banner(build_kernel) -> None:  # type: ignore[no-untyped-def]
    elf = build_kernel("FUNC f\n    nop\n    ret\n")
    img = open_image(elf)
    cfg = infer_config(img)
    assert cfg.version is None
    assert cfg.enabled("CALL_PADDING") is False
    assert all(inf.reason for inf in cfg.options.values())


@pytest.mark.kernel
def test_debian_61_vmlinux(debian) -> None:  # type: ignore[no-untyped-def]
    img = open_image(debian.vmlinux)
    cfg = infer_config(img)
    assert cfg.version is not None and cfg.version.series() == (6, 1) and cfg.version.patch >= 100
    expected = {
        "X86_KERNEL_IBT": False,  # Debian 6.1 builds without IBT: no ENDBR before the fentry call
        "RETPOLINE": True,
        "RETHUNK": True,
        "CALL_PADDING": False,
        "CALL_DEPTH_TRACKING": False,
        "CFI_CLANG": False,
        "KPROBES_ON_FTRACE": True,
        "OPTPROBES": True,
        "KPROBE_EVENTS_ON_NOTRACE": False,
        "PARAVIRT": True,
    }
    for option, value in expected.items():
        assert cfg.enabled(option) is value, cfg[option].reason
    assert "kprobe_ftrace_handler" in cfg["KPROBES_ON_FTRACE"].reason
    # the 6.1 layout of .altinstructions is kept: 12-byte entries, every length sane
    entries = read_table(img, TABLES["alt_instructions"])
    assert entries and all(e["instrlen"] <= 32 and e["replacementlen"] <= 64 for e in entries)
    assert read_table(img, TABLES["alt_instructions"], cfg.version) == entries


@pytest.mark.kernel
def test_debian_61_module(debian) -> None:  # type: ignore[no-untyped-def]
    img = open_image(debian.xfs)
    cfg = infer_config(img)
    assert cfg.version is not None and cfg.version.series() == (6, 1)
    assert cfg.enabled("RETHUNK") is True
    assert cfg.enabled("X86_KERNEL_IBT") is False
    assert cfg.enabled("OPTPROBES") is None  # a property of the vmlinux
