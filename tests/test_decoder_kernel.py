"""probelint's x86 length decoder against the kernel's own (arch/x86/lib/insn.c), built from source.

Needs gcc, the Debian ``linux-source-6.1`` package (``$PROBELINT_SOURCE_DEB``, a file or a
directory; else the probelint cache, else ``apt-get download``) and, for the vmlinux comparison,
the Debian 6.1 debug vmlinux (``$PROBELINT_VMLINUX``). Each test skips, saying what is missing,
when one of them cannot be had. See docs/decoder.md.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import compare_decoder  # noqa: E402
from kernel_decoder import SourceUnavailable, build_kernel_decoder  # noqa: E402

from probelint.arch.x86 import decode as x86  # noqa: E402

pytestmark = pytest.mark.kernel

VMLINUX = os.environ.get("PROBELINT_VMLINUX", compare_decoder.DEFAULT_VMLINUX)
SAMPLE, SEED = 2000, 20240601


def _source_deb() -> str | None:
    """$PROBELINT_SOURCE_DEB, else the directory the default vmlinux was unpacked beside."""
    env = os.environ.get("PROBELINT_SOURCE_DEB")
    if env:
        return env
    default_dir = Path(compare_decoder.DEFAULT_VMLINUX).parents[5]  # /var/cache/probelint-kernels
    return str(default_dir) if any(default_dir.glob("linux-source-*.deb")) else None


def _need_gcc() -> None:
    if shutil.which(os.environ.get("CC") or "gcc") is None:
        pytest.skip("gcc is not installed: cannot build the kernel's instruction decoder")


@pytest.fixture(scope="module")
def kernel_decoder():
    _need_gcc()
    try:
        return build_kernel_decoder(_source_deb())
    except SourceUnavailable as exc:
        pytest.skip(f"the linux-source-6.1 package is not available: {exc}")


# Encodings where iced-x86 alone disagrees with the kernel, and probelint fixes it up.
FIXUP_CASES = [
    pytest.param("0f0b78656e0fa2c3", id="xen-emulate-prefix-cpuid"),
    pytest.param("0f0b6b766d0f01c1c3", id="kvm-emulate-prefix-vmcall"),
    pytest.param("ea a7 08 00 01 08 00 c3", id="ljmp-ptr16:32"),
    pytest.param("66 ea 11 22 33 44 c3", id="ljmp-ptr16:16"),
    pytest.param("48 ea 11 22 33 44 55 66 c3", id="rex.w-ljmp-undecodable"),
    pytest.param("9a 11 22 33 44 55 66 c3", id="lcall-ptr16:32"),
    pytest.param("06 07 0e 16 17 1e 1f 27 2f 37 3f 60 61 ce d6 c3", id="i64-bare-opcodes"),
    pytest.param("d4 0a d5 0a c3", id="aam-aad"),
    pytest.param("0f ff c3", id="ud0-no-modrm"),
    pytest.param("0f 0b c3", id="ud2"),
    pytest.param("48 b8 11 22 33 44 55 66 77 88 c3", id="movabs"),
    pytest.param("f3 0f 1e fa e8 00 00 00 00 c3", id="endbr64-call"),
    pytest.param("c4 e2 79 18 05 00 00 00 00 62 f1 7c 48 10 00 c3", id="vex-evex"),
]


@pytest.mark.parametrize("hexbytes", FIXUP_CASES)
def test_fixups_match_kernel(kernel_decoder, hexbytes):
    code = bytes.fromhex(hexbytes.replace(" ", ""))
    (res,) = kernel_decoder.walk([(0x1000, len(code), code)])
    kernel = list(res.lengths) + (["undecodable"] if res.status else [])
    ours = [i.length if i.valid else "undecodable" for i in x86.decode(code, 0x1000)]
    assert ours == kernel


def test_decoder_agrees_with_kernel_on_vmlinux_sample(kernel_decoder):
    if not Path(VMLINUX).is_file():
        pytest.skip(f"no vmlinux at {VMLINUX} (set PROBELINT_VMLINUX)")
    res = compare_decoder.compare(VMLINUX, sample=SAMPLE, seed=SEED, source_deb=_source_deb())
    assert res.table_mismatches == [], "the decoder built from source is not the vmlinux's"
    assert res.functions_compared == min(SAMPLE, res.functions_total)
    assert [t.text for t in res.texts] == ["elf", "live"]  # ELF bytes, and the model's live text
    assert res.disagreements == [], "\n".join(map(str, res.disagreements))
    for t in res.texts:
        assert t.boundaries_kernel == t.boundaries_probelint > 0
        assert t.functions_agree == res.functions_compared
