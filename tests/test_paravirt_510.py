"""5.10's boot patching (changes.py "paravirt-alternatives", "static-nops"): native_patch() writes the
native instruction at a paravirt site, and the NOPs are the CPU's ideal_nops. Checked on the booted 5.10.223
cloud kernel (docs/linux-versions.md: dax_finish_sync_fault+0x228 EILSEQ, paravirt windows optimized)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from probelint.arch.x86.cpu import CpuProfile
from probelint.arch.x86.patching import patch_live_text
from probelint.image.kversion import parse_version

PV_OPS = 0xFFFFFFFF82600000
SITE = 0xFFFFFFFF81000010
NATIVE = {"native_irq_enable": 0xFFFFFFFF81060000, "__raw_callee_save___native_queued_spin_unlock": 0xFFFFFFFF81060100,
          "dax_helper": 0xFFFFFFFF81060200}
SLOTS = ("native_irq_enable", "__raw_callee_save___native_queued_spin_unlock", "dax_helper")


class _Image:
    """A vmlinux with three pv_ops slots and one 7-byte ``call *pv_ops+8*N`` site per slot."""

    is_module = False

    def __init__(self, version: str, symbols: dict[str, int]) -> None:
        self.config = SimpleNamespace(version=parse_version(version))
        self.vmlinux = self
        self._symbols = {**symbols, "pv_ops": PV_OPS, "register_kprobe": 0xFFFFFFFF81100000, **NATIVE}
        self._memory = {PV_OPS + 8 * i: NATIVE[name].to_bytes(8, "little") for i, name in enumerate(SLOTS)}
        self.paravirt_sites = [(SITE + 7 * i, i) for i in range(len(SLOTS))]
        self.sealed_endbrs: list[int] = []
        self.retpoline_sites: list[int] = []
        self.return_sites: list[int] = []
        self.alternative_sites: list[tuple[int, int]] = []

    def raw_symbol(self, name: str) -> int | None:
        return self._symbols.get(name)

    def lookup(self, address: int) -> SimpleNamespace | None:
        return next((SimpleNamespace(name=n, address=a) for n, a in self._symbols.items() if a == address), None)

    def read(self, address: int, size: int) -> bytes:
        return self._memory.get(address, b"")[:size]

    def table(self, name: str) -> list[dict[str, int]]:
        return [{"instr": SITE + 7 * i, "type": i, "len": 7} for i in range(len(SLOTS))] if name == "parainstructions" \
            else []

    def pv_op(self, op_type: int) -> int | None:
        raw = self.read(PV_OPS + 8 * op_type, 8)
        return int.from_bytes(raw, "little") if raw else None


def _live(image: _Image, profile: CpuProfile) -> list[str]:
    text = patch_live_text(image, SITE, bytes.fromhex("ff142500000000") * len(SLOTS), profile)
    return [text[7 * i : 7 * i + 7].hex() for i in range(len(SLOTS))]


def _call(slot: int) -> str:
    return "e8" + ((NATIVE[SLOTS[slot]] - (SITE + 7 * slot + 5)) & 0xFFFFFFFF).to_bytes(4, "little").hex()


OLD = {"native_patch": 0xFFFFFFFF81063F00, "ideal_nops": 0xFFFFFFFF826257E0, "_paravirt_nop": 0xFFFFFFFF81063000}


@pytest.mark.parametrize(("profile", "pad2", "pad4", "pad6"), [
    # qemu64 is AMD family 15: k8_nops, whose 5..8-byte NOPs are two instructions
    (CpuProfile.QEMU64, "6690", "66666690", "666690666690"),
    # EPYC-Rome (AMD family 0x17) and Skylake (Intel with NOPL): p6_nops, x86_nops' bytes
    (CpuProfile.EPYC_ROME, "6690", "0f1f4000", "660f1f440000"),
    (CpuProfile.SKYLAKE_CLIENT_V4, "6690", "0f1f4000", "660f1f440000"),
])
def test_510_native_patch_and_ideal_nops(profile: CpuProfile, pad2: str, pad4: str, pad6: str) -> None:
    irq_enable, unlock, other = _live(_Image("5.10.223", OLD), profile)
    assert irq_enable == "fb" + pad6  # sti
    assert unlock == "c60700" + pad4  # movb $0, (%rdi)
    assert other == _call(2) + pad2  # any other op: paravirt_patch_default's call


def test_after_the_changes_every_site_is_a_call() -> None:
    # 6.1: neither native_patch nor ideal_nops; the image decides, even against its version
    for version in ("6.1.192", "5.10.223"):
        assert _live(_Image(version, {"_paravirt_nop": OLD["_paravirt_nop"]}), CpuProfile.QEMU64) == \
            [_call(i) + "6690" for i in range(len(SLOTS))]
