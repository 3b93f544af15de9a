"""The text the kernel checks is the text as patched at boot, not the ELF's bytes.

`can_probe`, `can_optimize` and `copy_optimized_instructions` read live text. What changes
depends on the CPU and its mitigations, so it is an explicit choice, `CpuProfile`:

* return sites (``.return_sites``: each a 5-byte ``jmp __x86_return_thunk``) are rewritten by
  arch/x86/kernel/alternative.c `apply_returns` to ``ret; int3; int3; int3; int3`` when the CPU
  needs no return thunk (`ret`, e.g. qemu's qemu64), stay jumps into the thunk area when it does
  (`rethunk`: AMD with the retbleed/SRSO mitigation, e.g. EPYC-Rome), and with the Intel ITS
  return thunk stay jumps only where bit 5 of the site address is clear (`its`,
  `cpu_wants_rethunk_at`);
* paravirt call sites (``.parainstructions``, `apply_paravirt`): ``call *pv_ops+N(%rip)``
  becomes a direct ``call`` of the op's function padded with NOPs, or only NOPs when the op is
  `_paravirt_nop` (`paravirt_patch`), read from the statically initialised ``pv_ops`` (a kernel
  booted bare or under plain QEMU keeps those);
* alternatives (``.altinstructions``, `apply_alternatives`, in table order): a site whose feature
  test passes gets its replacement (short/near jmp recomputed as `recompute_jump` does, padded
  with 0x90), and every site then has its runs of 0x90 merged into long NOPs (`optimize_nops`).
  Which features a CPU has is modelled only for what does not vary: X86_FEATURE_ALWAYS is
  present and X86_FEATURE_XENPV absent (so the ``ALT_NOT(XENPV)`` paravirt fast paths take their
  native instructions); every other feature is taken as absent;
* ftrace sites are read back as a 5-byte NOP (`__recover_probed_insn`): same length as the ELF's
  call, so nothing to patch for decoding.

Boot order (`alternative_instructions`): paravirt, retpolines (not modelled), returns, alternatives.
"""

from __future__ import annotations

import bisect
import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probelint.image.kernel import Image

__all__ = ["DEFAULT_PROFILE", "CpuProfile", "patch_live_text"]

_RET_INT3 = b"\xc3\xcc\xcc\xcc\xcc"
_SEAL_POISON = b"\x66\x0f\x1f\x00"  # asm/ibt.h gen_endbr_poison(): osp nopl (%rax)
_RETURN_SITE_SIZE = 5
# arch/x86/include/asm/nops.h, x86-64: x86_nops[n] for n = 1..ASM_NOP_MAX
_NOPS = {1: "90", 2: "6690", 3: "0f1f00", 4: "0f1f4000", 5: "0f1f440000", 6: "660f1f440000",
         7: "0f1f8000000000", 8: "0f1f840000000000"}
ASM_NOP_MAX = 8
ALTINSTR_FLAG_INV = 1 << 15
ALT_FLAG_DIRECT_CALL = 1 << 1  # >= 6.8 struct alt_instr flags (tables.py exposes "flags")
X86_FEATURE_ALWAYS = 3 * 32 + 21
_MAX_SITE = 64  # longest patch site considered when looking for sites overlapping a range


class CpuProfile(enum.Enum):
    RET = "ret"
    RETHUNK = "rethunk"
    ITS = "its"

    def keeps_return_thunk(self, site: int) -> bool:
        if self is CpuProfile.RETHUNK:
            return True
        if self is CpuProfile.ITS:
            return not site & 0x20
        return False


# Intel CPUs unaffected by retbleed/ITS and mitigations=off boxes patch returns to `ret`: the
# most common deployment of a 6.1 kernel in clouds and what qemu64 does.
DEFAULT_PROFILE = CpuProfile.RET


def add_nops(length: int) -> bytes:
    """alternative.c add_nops(): the longest NOPs first, ASM_NOP_MAX bytes at most each."""
    out = b""
    while length > 0:
        n = min(length, ASM_NOP_MAX)
        out += bytes.fromhex(_NOPS[n])
        length -= n
    return out


def optimize_nops(site: bytes) -> bytes:
    """alternative.c optimize_nops(): merge each run of single-byte NOPs into long NOPs."""
    from probelint.arch import x86

    buf = bytearray(site)
    pos = 0
    while pos < len(buf):
        insn = next(x86.decode(bytes(buf[pos:]), 0), None)
        if insn is None or not insn.valid:
            break
        if insn.raw == b"\x90":
            end = pos
            while end < len(buf) and buf[end] == 0x90:
                end += 1
            if end - pos > 1:
                buf[pos:end] = add_nops(end - pos)
            pos = end
        else:
            pos += insn.length
    return bytes(buf)


def _has_feature(feature: int) -> bool:
    return feature == X86_FEATURE_ALWAYS


def _alternative(image: Image, entry: dict[str, int]) -> bytes:
    """The bytes apply_alternatives() leaves at one site."""
    instr, length = entry["instr"], entry["instrlen"]
    feature, inverted = entry["cpuid"] & ~ALTINSTR_FLAG_INV, bool(entry["cpuid"] & ALTINSTR_FLAG_INV)
    original = image.read(instr, length)
    if _has_feature(feature) == inverted:  # apply_alternatives() patches iff has(feature) != inverted
        return optimize_nops(original)
    if entry.get("flags", 0) & ALT_FLAG_DIRECT_CALL:
        direct = _direct_call(image, instr, original)
        if direct is not None:
            return direct
    repl_len = entry["replacementlen"]
    buf = bytearray(image.read(entry["repl"], repl_len))
    if repl_len and buf[0] in (0xE9, 0xEB):
        # recompute_jump(): re-aim the jmp from the site, as a 2-byte jmp when it fits
        disp = int.from_bytes(buf[1:5] if buf[0] == 0xE9 else buf[1:2], "little", signed=True)
        target = entry["repl"] + (5 if buf[0] == 0xE9 else 2) + disp
        n_dspl = target - instr
        if abs(n_dspl - 2) <= 127:
            buf = bytearray(b"\xeb" + ((n_dspl - 2) & 0xFF).to_bytes(1, "little")) + add_nops(3)
            repl_len = 2
        else:
            buf = bytearray(b"\xe9" + ((n_dspl - 5) & 0xFFFFFFFF).to_bytes(4, "little"))
    buf = buf[:repl_len] + b"\x90" * max(0, length - repl_len)
    return optimize_nops(bytes(buf[:length]))


def _direct_call(image: Image, instr: int, original: bytes) -> bytes | None:
    """>= 6.8 alt_replace_call(): ``call *slot(%rip)`` becomes ``call <*slot>`` + NOP, or NOPs
    when the slot holds nop_func (paravirt ops as alternatives, ALT_FLAG_DIRECT_CALL)."""
    if original[:2] != b"\xff\x15" or len(original) < 6:
        return None
    slot = instr + 6 + int.from_bytes(original[2:6], "little", signed=True)
    vmlinux = image if image.layout is None else image.vmlinux
    if vmlinux is None:
        return None
    raw = vmlinux.read(slot, 8)
    if len(raw) != 8:
        return None
    target = int.from_bytes(raw, "little")
    if target == vmlinux.raw_symbol("nop_func"):
        return add_nops(len(original))
    rel = (target - (instr + 5)) & 0xFFFFFFFF
    return b"\xe8" + rel.to_bytes(4, "little") + add_nops(len(original) - 5)


def _paravirt(image: Image, entry: dict[str, int]) -> bytes | None:
    """The bytes apply_paravirt() leaves at one site (None: left as it is)."""
    length = entry["len"]
    target = image.pv_op(entry["type"])
    if target is None:
        return None
    if target == 0:  # _paravirt_nop
        return add_nops(length)
    if length < 5:
        return None  # paravirt_patch_call() cannot fit a call: the site stays
    rel = (target - (entry["instr"] + 5)) & 0xFFFFFFFF
    return b"\xe8" + rel.to_bytes(4, "little") + add_nops(length - 5)


def _overlay(buf: bytearray, address: int, site: int, patched: bytes) -> None:
    lo, hi = max(site, address), min(site + len(patched), address + len(buf))
    if lo < hi:
        buf[lo - address : hi - address] = patched[lo - site : hi - site]


def _sites(sorted_sites: list[tuple[int, int]], address: int, end: int) -> list[int]:
    """Indexes (in table order) of the sites that may overlap [address, end)."""
    lo = bisect.bisect_left(sorted_sites, (address - _MAX_SITE, -1))
    hi = bisect.bisect_left(sorted_sites, (end, -1))
    return sorted(i for _, i in sorted_sites[lo:hi])


def patch_live_text(image: Image, address: int, data: bytes, profile: CpuProfile) -> bytes:
    """`data` (the ELF bytes at `address`) as the running kernel holds them under `profile`."""
    end = address + len(data)
    buf = bytearray(data)
    paravirt = image.table("parainstructions")
    for i in _sites(image.paravirt_sites, address, end):
        patched = _paravirt(image, paravirt[i])
        if patched is not None:
            _overlay(buf, address, paravirt[i]["instr"], patched)
    for site in image.sealed_endbrs[bisect.bisect_left(image.sealed_endbrs, address - 3):
                                    bisect.bisect_left(image.sealed_endbrs, end)]:
        _overlay(buf, address, site, _SEAL_POISON)  # apply_seal_endbr(): unused ENDBRs poisoned
    sites = image.return_sites
    for site in sites[bisect.bisect_left(sites, address - _RETURN_SITE_SIZE + 1) : bisect.bisect_left(sites, end)]:
        if not profile.keeps_return_thunk(site):
            _overlay(buf, address, site, _RET_INT3)
    alternatives = image.table("alt_instructions")
    for i in _sites(image.alternative_sites, address, end):
        entry = alternatives[i]
        if entry["instrlen"]:
            _overlay(buf, address, entry["instr"], _alternative(image, entry))
    return bytes(buf)
