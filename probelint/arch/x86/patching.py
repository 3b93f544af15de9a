"""The text the kernel checks is the text as patched at boot, not the ELF's bytes.

`can_probe`, `can_optimize` and `copy_optimized_instructions` read live text. What changes
depends on the CPU and its mitigations, so it is an explicit choice, `CpuProfile` (arch/x86/cpu.py):

* return sites (``.return_sites``: each a 5-byte ``jmp __x86_return_thunk``) are rewritten by
  arch/x86/kernel/alternative.c `apply_returns` to ``ret; int3; int3; int3; int3`` when the CPU
  needs no return thunk (qemu64), stay jumps into the thunk area when it does (EPYC-Rome: the
  retbleed/SRSO thunk), and with the Intel ITS return thunk stay jumps only where bit 5 of the
  site address is clear (Skylake-Client-v4, `cpu_wants_rethunk_at`);
* retpoline sites (``.retpoline_sites``, `apply_retpolines`/`patch_retpoline`): without
  X86_FEATURE_RETPOLINE (spectre_v2=off, eIBRS) ``call/jmp __x86_indirect_thunk_REG`` becomes
  ``call/jmp *%REG`` + int3/NOPs, or the ITS thunk call; with RETPOLINE_LFENCE ``lfence`` first;
* paravirt call sites (``.parainstructions``, `apply_paravirt`): ``call *pv_ops+N(%rip)``
  becomes a direct ``call`` of the op's function padded with NOPs, or only NOPs when the op is
  `_paravirt_nop` (`paravirt_patch`), read from the statically initialised ``pv_ops`` (a kernel
  booted bare or under plain QEMU keeps those); before changes.py "paravirt-alternatives" (5.10)
  `native_patch` writes the native instruction of the irq/cr/wbinvd/spinlock ops instead;
* alternatives (``.altinstructions``, `apply_alternatives`, in table order): a site whose feature
  test passes gets its replacement (short/near jmp recomputed as `recompute_jump` does, padded
  with 0x90), and every site then has its runs of 0x90 merged into long NOPs (`optimize_nops`).
  Which features a CPU has is the profile's (arch/x86/cpu.py `feature_bits`);
* NOPs: the fixed x86_nops, or before changes.py "static-nops" (5.10) the CPU's `ideal_nops`;
* ftrace sites are read back as a 5-byte NOP (`__recover_probed_insn`): same length as the ELF's
  call, so nothing to patch for decoding.

Boot order (`alternative_instructions`): paravirt, retpolines, returns, alternatives.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from probelint.arch.x86 import decode as x86
from probelint.arch.x86.cpu import UNNAMED_BITS, CpuProfile, feature_bits, feature_column

if TYPE_CHECKING:
    from probelint.image.view import KernelImage

__all__ = ["ALTINSTR_FLAG_INV", "add_nops", "optimize_nops", "patch_live_text", "patch_retpoline",
           "patches_retpolines"]

_RET_INT3 = b"\xc3\xcc\xcc\xcc\xcc"
# asm/ibt.h gen_endbr_poison(): osp nopl (%rax); from changes.py "endbr-poison-udb" nopl -42(%rax)
_SEAL_POISON = b"\x66\x0f\x1f\x00"
_SEAL_POISON_UDB = b"\x0f\x1f\x40\xd6"
_RETURN_SITE_SIZE = 5
# arch/x86/include/asm/nops.h, x86-64: x86_nops[n] for n = 1..ASM_NOP_MAX
_NOPS = {1: "90", 2: "6690", 3: "0f1f00", 4: "0f1f4000", 5: "0f1f440000", 6: "660f1f440000",
         7: "0f1f8000000000", 8: "0f1f840000000000"}
# before "static-nops": arch/x86/include/asm/nops.h of 5.10, the x86-64 tables arch_init_ideal_nops picks
_K8_NOPS = {1: "90", 2: "6690", 3: "666690", 4: "66666690", 5: "6666906690", 6: "666690666690",
            7: "66666690666690", 8: "6666669066666690"}
ASM_NOP_MAX = 8
NopTable = dict[int, str]
# 5.10 paravirt_patch.c patch_data_xxl / patch_data_lock: native_patch() writes these for the op
# whose pv_ops slot holds the named native function; paravirt_patch_default() the identity mov
_NATIVE_PATCH = {
    "native_irq_disable": "fa",  # cli
    "native_irq_enable": "fb",  # sti
    "native_save_fl": "9c58",  # pushf; pop %rax
    "native_restore_fl": "579d",  # push %rdi; popfq
    "native_read_cr2": "0f20d0",  # mov %cr2, %rax
    "__native_read_cr3": "0f20d8",  # mov %cr3, %rax
    "native_write_cr3": "0f22df",  # mov %rdi, %cr3
    "native_wbinvd": "0f09",  # wbinvd
    "__raw_callee_save___native_queued_spin_unlock": "c60700",  # movb $0, (%rdi)
    "__raw_callee_save___native_vcpu_is_preempted": "31c0",  # xor %eax, %eax
    "_paravirt_ident_64": "4889f8",  # mov %rdi, %rax
}
ALTINSTR_FLAG_INV = 1 << 15
ALT_FLAG_DIRECT_CALL = 1 << 1  # >= 6.8 struct alt_instr flags (tables.py exposes "flags")
_MAX_SITE = 64  # longest patch site considered when looking for sites overlapping a range
_RETPOLINE_THUNK_SIZE = 32  # asm/nospec-branch.h RETPOLINE_THUNK_SIZE: __x86_indirect_thunk_array stride
# Where its_allocate_thunk() puts an ITS thunk is a module_alloc() page chosen at boot: not
# derivable offline. Any address outside the kernel's thunk area gives the same kprobe verdicts
# (opt.c insn_is_indirect_jump() only tests __indirect_thunk_start..end), so the start of the
# 6.1 x86-64 module area (MODULES_VADDR, nokaslr) stands in for it.
_ITS_PAGE = 0xFFFFFFFFA0000000



def add_nops(length: int, nops: NopTable = _NOPS) -> bytes:
    """alternative.c add_nops(): the longest NOPs first, ASM_NOP_MAX bytes at most each."""
    out = b""
    while length > 0:
        n = min(length, ASM_NOP_MAX)
        out += bytes.fromhex(nops[n])
        length -= n
    return out


def nop_table(image: KernelImage, profile: CpuProfile) -> NopTable:
    """The NOPs boot patching writes: x86_nops, or before "static-nops" 5.10's arch_init_ideal_nops()
    choice for the profile's CPU (x86-64: k8_nops or p6_nops, which are x86_nops' bytes)."""
    from probelint.image.changes import applies

    kernel = image.vmlinux if image.vmlinux is not None else image
    if applies("static-nops", kernel, kernel.config.version).value:
        return _NOPS
    vendor, family, model = profile.model.cpuid
    if vendor == "GenuineIntel":
        k8 = family == 6 and 0x0F <= model < 0x30 and model not in (0x1C, 0x26, 0x27)
        return _K8_NOPS if k8 or "nopl" not in profile.model.flags.split() else _NOPS
    if vendor == "HygonGenuine" or (vendor == "AuthenticAMD" and family > 0xF):
        return _NOPS
    return _K8_NOPS


def optimize_nops(site: bytes, nops: NopTable = _NOPS) -> bytes:
    """alternative.c optimize_nops(): merge each run of single-byte NOPs into long NOPs."""
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
                buf[pos:end] = add_nops(end - pos, nops)
            pos = end
        else:
            pos += insn.length
    return bytes(buf)


def _alternative(image: KernelImage, entry: dict[str, int], features: frozenset[int], current: bytes,
                 nops: NopTable) -> bytes:
    """The bytes apply_alternatives() leaves at one site."""
    instr, length = entry["instr"], entry["instrlen"]
    feature, inverted = entry["cpuid"] & ~ALTINSTR_FLAG_INV, bool(entry["cpuid"] & ALTINSTR_FLAG_INV)
    if (feature in features) == inverted:  # apply_alternatives() patches iff has(feature) != inverted
        return optimize_nops(current, nops)  # the site as earlier entries left it (several entries share sites)
    original = image.read(instr, length)
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
            from probelint.image.changes import applies

            kernel = image.vmlinux if image.vmlinux is not None else image
            short = b"\xeb" + ((n_dspl - 2) & 0xFF).to_bytes(1, "little")
            if buf[0] == 0xE9 and applies("alt-jmp-int3-pad", kernel, kernel.config.version).value:
                buf, repl_len = bytearray(short + b"\xcc" * 3), 5  # __apply_relocation: int3 after the jmp8
            else:
                buf, repl_len = bytearray(short) + add_nops(3, nops), 2
        else:
            buf = bytearray(b"\xe9" + ((n_dspl - 5) & 0xFFFFFFFF).to_bytes(4, "little"))
    buf = buf[:repl_len] + b"\x90" * max(0, length - repl_len)
    return optimize_nops(bytes(buf[:length]), nops)


def _direct_call(image: KernelImage, instr: int, original: bytes) -> bytes | None:
    """>= 6.8 alt_replace_call(): ``call *slot(%rip)`` becomes ``call <*slot>`` + NOP, or NOPs
    when the slot holds nop_func (paravirt ops as alternatives, ALT_FLAG_DIRECT_CALL)."""
    if original[:2] != b"\xff\x15" or len(original) < 6:
        return None
    slot = instr + 6 + int.from_bytes(original[2:6], "little", signed=True)
    vmlinux = image.vmlinux
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


def patch_retpoline(addr: int, insn: bytes, reg: int, *, lfence: bool = False,
                    its_thunk: int | None = None) -> bytes | None:
    """alternative.c patch_retpoline() (6.1) for a CPU without X86_FEATURE_RETPOLINE (or with
    RETPOLINE_LFENCE): the bytes replacing `insn` (``call/jmp __x86_indirect_thunk_<reg>`` or
    ``jcc.d32`` to it, at `addr`), or None where the kernel leaves the site (the result would not
    fit). `its_thunk`: X86_FEATURE_INDIRECT_THUNK_ITS is set, the ITS thunk of `reg`."""
    out = bytearray()
    op = insn[-5]  # the opcode before the rel32 (after a CS prefix)
    if insn[0] == 0x0F:  # jcc.d32: jncc.d8 over the jmp
        out += bytes((0x70 + ((insn[1] & 0xF) ^ 1), len(insn) - 2))
        op = 0xE9
    if lfence:
        out += b"\x0f\xae\xe8"
    # cpu_wants_indirect_its_thunk_at(): the indirect branch's last opcode byte in a lower half-line
    if its_thunk is not None and not (addr + len(out) + 1 + reg // 8) & 0x20:
        return _its_trampoline(addr, insn, its_thunk)
    if reg >= 8:
        out.append(0x41)  # REX.B
    out += bytes((0xFF, (0x10 if op == 0xE8 else 0x20) | 0xC0 | (reg & 7)))  # emit_indirect()
    if op == 0xE9 and len(out) < len(insn):
        out.append(0xCC)  # int3 after an indirect jmp (SLS)
    if len(out) > len(insn):
        return None
    return optimize_nops(bytes(out) + b"\x90" * (len(insn) - len(out)))


def _its_trampoline(addr: int, insn: bytes, thunk: int) -> bytes:
    """__emit_trampoline(): the same call/jmp/jcc (CS prefix kept), re-aimed at the ITS thunk."""
    rel = (thunk - (addr + len(insn))) & 0xFFFFFFFF
    return insn[:-4] + rel.to_bytes(4, "little")


def _retpoline(image: KernelImage, site: int, features: frozenset[int], column: int) -> bytes | None:
    """The bytes apply_retpolines() leaves at one .retpoline_sites entry (None: unchanged)."""
    vmlinux = image.vmlinux
    array = vmlinux.raw_symbol("__x86_indirect_thunk_array") if vmlinux is not None else None
    if array is None:
        return None
    head = image.read(site, 6)
    cs_prefixed = head[:1] == b"\x2e" and head[1:2] in (b"\xe8", b"\xe9")  # -mindirect-branch-cs-prefix
    if head[:1] in (b"\xe8", b"\xe9"):
        insn = head[:5]
    elif cs_prefixed or (head[:1] == b"\x0f" and 0x80 <= head[1] <= 0x8F):
        insn = head[:6]
    else:
        return None  # WARN_ON_ONCE in apply_retpolines(): not patched
    target = site + len(insn) + int.from_bytes(insn[-4:], "little", signed=True)
    reg, rest = divmod(target - array, _RETPOLINE_THUNK_SIZE)
    if rest or not 0 <= reg < 16 or reg == 4:
        return None
    its = UNNAMED_BITS["INDIRECT_THUNK_ITS"][column] in features
    return patch_retpoline(site, insn, reg, lfence=UNNAMED_BITS["RETPOLINE_LFENCE"][column] in features,
                           its_thunk=_ITS_PAGE if its else None)


def _paravirt(image: KernelImage, entry: dict[str, int], nops: NopTable) -> bytes | None:
    """The bytes apply_paravirt() leaves at one site (None: left as it is)."""
    length = entry["len"]
    target = image.pv_op(entry["type"])
    if target is None:
        return None
    if target == 0:  # _paravirt_nop
        return add_nops(length, nops)
    native = _native_patch(image, target)
    if native is not None:
        return native + add_nops(length - len(native), nops) if len(native) <= length else None
    if length < 5:
        return None  # paravirt_patch_call() cannot fit a call: the site stays
    rel = (target - (entry["instr"] + 5)) & 0xFFFFFFFF
    return b"\xe8" + rel.to_bytes(4, "little") + add_nops(length - 5, nops)


def _native_patch(image: KernelImage, target: int) -> bytes | None:
    """Before "paravirt-alternatives": native_patch()'s instruction for the op whose slot holds
    `target` (None: a call, as paravirt_patch_default() writes for the other ops)."""
    from probelint.image.changes import applies

    vmlinux = image.vmlinux
    if vmlinux is None or applies("paravirt-alternatives", vmlinux, vmlinux.config.version).value:
        return None
    sym = vmlinux.lookup(target)
    if sym is None or sym.address != target:
        return None
    code = _NATIVE_PATCH.get(sym.name)
    return bytes.fromhex(code) if code is not None else None


def _overlay(buf: bytearray, address: int, site: int, patched: bytes) -> None:
    lo, hi = max(site, address), min(site + len(patched), address + len(buf))
    if lo < hi:
        buf[lo - address : hi - address] = patched[lo - site : hi - site]


def _sites(sorted_sites: list[tuple[int, int]], address: int, end: int) -> list[int]:
    """Indexes (in table order) of the sites that may overlap [address, end)."""
    lo = bisect.bisect_left(sorted_sites, (address - _MAX_SITE, -1))
    hi = bisect.bisect_left(sorted_sites, (end, -1))
    return sorted(i for _, i in sorted_sites[lo:hi])


def _seal_poison(image: KernelImage) -> bytes:
    from probelint.image.changes import applies

    kernel = image.vmlinux if image.vmlinux is not None else image
    return _SEAL_POISON_UDB if applies("endbr-poison-udb", kernel, kernel.config.version).value else _SEAL_POISON


def patches_retpolines(image: KernelImage, features: frozenset[int]) -> bool:
    """apply_retpolines() rewrites the sites only without RETPOLINE, or with its LFENCE variant."""
    column = feature_column(image)
    retpoline, lfence = (UNNAMED_BITS[f][column] in features for f in ("RETPOLINE", "RETPOLINE_LFENCE"))
    return lfence or not retpoline


def patch_live_text(image: KernelImage, address: int, data: bytes, profile: CpuProfile) -> bytes:
    """`data` (the ELF bytes at `address`) as the running kernel holds them under `profile`."""
    end = address + len(data)
    buf = bytearray(data)
    features = feature_bits(image, profile)
    nops = nop_table(image, profile)
    paravirt = image.table("parainstructions")
    for i in _sites(image.paravirt_sites, address, end):
        patched = _paravirt(image, paravirt[i], nops)
        if patched is not None:
            _overlay(buf, address, paravirt[i]["instr"], patched)
    sealed = image.sealed_endbrs[bisect.bisect_left(image.sealed_endbrs, address - 3):
                                 bisect.bisect_left(image.sealed_endbrs, end)]
    if sealed:
        poison = _seal_poison(image)
        for site in sealed:
            _overlay(buf, address, site, poison)  # apply_seal_endbr(): unused ENDBRs poisoned
    # apply_retpolines(): only without RETPOLINE, or with its LFENCE variant (patch_retpoline())
    column = feature_column(image)
    if patches_retpolines(image, features):
        sites = image.retpoline_sites
        for site in sites[bisect.bisect_left(sites, address - 5) : bisect.bisect_left(sites, end)]:
            patched = _retpoline(image, site, features, column)
            if patched is not None:
                _overlay(buf, address, site, patched)
    sites = image.return_sites
    for site in sites[bisect.bisect_left(sites, address - _RETURN_SITE_SIZE + 1) : bisect.bisect_left(sites, end)]:
        if not profile.keeps_return_thunk(site):
            _overlay(buf, address, site, _RET_INT3)
    alternatives = image.table("alt_instructions")
    for i in _sites(image.alternative_sites, address, end):
        entry = alternatives[i]
        if entry["instrlen"]:
            site = bytearray(image.read(entry["instr"], entry["instrlen"]))
            _overlay(site, entry["instr"], address, bytes(buf))  # what is live there so far
            _overlay(buf, address, entry["instr"], _alternative(image, entry, features, bytes(site), nops))
    return bytes(buf)
