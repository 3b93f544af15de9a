"""x86-64 instruction decoding as the kernel's own decoder (arch/x86/lib/insn.c) sees it.

The kernel walks a function linearly from its kallsyms start with `insn_decode_kernel()`
(arch/x86/kernel/kprobes/core.c `can_probe`), so an offset is a valid probe point exactly when
that walk lands on it. We decode with iced-x86 and fix up the few places where the kernel's
table-driven length decoder disagrees (measured over every function of the Debian 6.1 vmlinux,
see docs/decoder.md and scripts/compare_decoder.py):

* Xen/KVM "emulate prefixes" (``ud2; .ascii "xen"`` / ``"kvm"``) are folded by the kernel into
  the instruction that follows them (`insn_get_emulate_prefix`);
* opcodes invalid in 64-bit mode (``ljmp``/``lcall ptr16:32`` in 32-bit boot code, ``push %es``...)
  are still sized by the kernel from its opcode map, which ignores the ``(i64)`` marker;
* ``0f ff`` (UD0) has no ModRM byte in the kernel's opcode map.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache, lru_cache
from typing import NamedTuple

from probelint.arch.x86 import iced

__all__ = [
    "ENDBR_INSN_SIZE",
    "JMP32_INSN_SIZE",
    "MAX_INSN_SIZE",
    "MAX_OPTIMIZED_LENGTH",
    "MCOUNT_INSN_SIZE",
    "Insn",
    "decode",
    "format_insn",
]

MAX_INSN_SIZE = 15  # arch/x86/include/asm/insn.h
JMP32_INSN_SIZE = 5  # arch/x86/include/asm/text-patching.h
MCOUNT_INSN_SIZE = 5  # arch/x86/include/asm/ftrace.h: the fentry call site
ENDBR_INSN_SIZE = 4  # arch/x86/include/asm/ibt.h
# ENDBR64, ENDBR32, and the poison apply_seal_endbr() writes over unused ENDBRs (asm/ibt.h)
# ENDBR64, ENDBR32, and the seal poisons (66 0f 1f 00; 0f 1f 40 d6 with changes.py "endbr-poison-udb")
_ENDBR_WORDS = (b"\xf3\x0f\x1e\xfa", b"\xf3\x0f\x1e\xfb", b"\x66\x0f\x1f\x00", b"\x0f\x1f\x40\xd6")
MAX_OPTIMIZED_LENGTH = MAX_INSN_SIZE + 4  # + DISP32_SIZE, arch/x86/include/asm/kprobes.h

XEN_EMULATE_PREFIX = b"\x0f\x0b" + b"xen"  # arch/x86/include/asm/emulate_prefix.h
KVM_EMULATE_PREFIX = b"\x0f\x0b" + b"kvm"

_LEGACY_PREFIXES = frozenset(b"\x26\x2e\x36\x3e\x64\x65\x66\x67\xf0\xf2\xf3")
# One-byte opcodes marked (i64) in x86-opcode-map.txt that take no operand bytes: the kernel
# sizes them as the bare opcode, iced reports them invalid in 64-bit mode.
_I64_BARE_OPCODES = frozenset(b"\x06\x07\x0e\x16\x17\x1e\x1f\x27\x2f\x37\x3f\x60\x61\xce\xd6")
_I64_IMM8_OPCODES = frozenset(b"\xd4\xd5")  # AAM/AAD Ib
_I64_FAR_PTR_OPCODES = frozenset(b"\x9a\xea")  # CALLF/JMP-far Ap: ptr16:16 or ptr16:32


class Insn(NamedTuple):
    """One instruction as the kernel's decoder delimits it.

    `decoded` is iced's view of the instruction proper (after any emulate prefix); it is None
    when the kernel's length came from a fix-up or the bytes are undecodable (`valid` False).
    A NamedTuple: a cold run builds ~100 per probed function, and a frozen dataclass's __init__
    costs three times as much.
    """

    address: int
    length: int
    raw: bytes
    decoded: iced.Instruction | None
    emulate_prefix: bool = False
    valid: bool = True

    @property
    def end(self) -> int:
        return self.address + self.length


def _legacy_prefix_count(code: bytes, pos: int) -> int:
    n = 0
    while pos + n < len(code) and code[pos + n] in _LEGACY_PREFIXES and n < MAX_INSN_SIZE:
        n += 1
    # A REX prefix (40-4f) directly before the opcode is a prefix too in 64-bit mode.
    if pos + n < len(code) and 0x40 <= code[pos + n] <= 0x4F:
        n += 1
    return n


def _kernel_only_length(code: bytes, pos: int) -> int | None:
    """Length the kernel gives bytes that iced rejects, or None if the kernel rejects them too."""
    npfx = _legacy_prefix_count(code, pos)
    if pos + npfx >= len(code):
        return None
    op = code[pos + npfx]
    prefixes = code[pos : pos + npfx]
    if op in _I64_BARE_OPCODES:
        length = npfx + 1
    elif op in _I64_IMM8_OPCODES:
        length = npfx + 2
    elif op in _I64_FAR_PTR_OPCODES:
        # REX.W makes the operand size 8 and insn.c __get_immptr() rejects "ptr16:64"
        # (found by feeding 48 ea ... to the kernel's decoder: scripts/kernel_decoder.py --hex).
        if prefixes and 0x40 <= prefixes[-1] <= 0x4F and prefixes[-1] & 0x08:
            return None
        length = npfx + 1 + (2 if 0x66 in prefixes else 4) + 2
    elif op == 0x0F and pos + npfx + 1 < len(code) and code[pos + npfx + 1] == 0xFF:
        length = npfx + 2  # UD0: no ModRM in the kernel's opcode map
    else:
        return None
    return length if length <= MAX_INSN_SIZE and pos + length <= len(code) else None


_INVALID = iced.INVALID_CODE
_UD0 = iced.UD0


def _decode_at(decoder: iced.Decoder, code: bytes, pos: int, address: int) -> Insn:
    """Decode one instruction at `pos` (the decoder is positioned there already)."""
    emulate = code[pos : pos + 1] == b"\x0f" and (code.startswith(XEN_EMULATE_PREFIX, pos)
                                                  or code.startswith(KVM_EMULATE_PREFIX, pos))
    inner = pos + len(XEN_EMULATE_PREFIX) if emulate else pos
    if emulate:
        decoder.position = inner
        decoder.ip = address + inner
    instr = decoder.decode()
    # iced sizes UD0 with a ModRM byte; the kernel does not.
    if instr.code != _INVALID and instr.mnemonic != _UD0:
        length = inner - pos + instr.len
        if length <= MAX_INSN_SIZE:
            return Insn(address + pos, length, code[pos : pos + length], instr, emulate)
    fixed = _kernel_only_length(code, inner)
    if fixed is not None:
        length = inner - pos + fixed
        return Insn(address + pos, length, code[pos : pos + length], None, emulate)
    return Insn(address + pos, 1, code[pos : pos + 1], None, emulate, valid=False)


Decoder = iced.Decoder


def decoder(code: bytes, address: int) -> Decoder:
    """A decoder over `code` (located at `address`) for `decode_at`."""
    return iced.Decoder(64, code, ip=address, options=iced.NO_INVALID_CHECK)


def decode_at(dec: Decoder, code: bytes, pos: int, address: int) -> Insn:
    """The instruction at offset `pos` of `code`, a start already known from a walk."""
    dec.position = pos
    dec.ip = address + pos
    return _decode_at(dec, code, pos, address)


def decode(code: bytes, address: int, *, stop_at_invalid: bool = True) -> Iterator[Insn]:
    """Walk `code` (located at `address`) instruction by instruction, as `can_probe` does.

    The walk ends at the end of `code`, or after the first undecodable instruction when
    `stop_at_invalid` (the kernel gives up there; that instruction is yielded with
    ``valid=False``). An instruction that would run past the end of `code` is undecodable,
    exactly as `insn_decode` fails when its buffer runs out.
    """
    dec = decoder(code, address)
    pos = 0
    while pos < len(code):
        if dec.position != pos:
            dec.position = pos
            dec.ip = address + pos
        insn = _decode_at(dec, code, pos, address)
        yield insn
        if not insn.valid and stop_at_invalid:
            return
        pos += insn.length


@cache
def _formatter() -> iced.Formatter:
    fmt = iced.Formatter(iced.GAS)
    fmt.uppercase_hex = False
    fmt.space_after_operand_separator = True
    return fmt


def format_insn(insn: Insn) -> str:
    """AT&T text of an instruction, as objdump and kernel people read it."""
    if not insn.valid:
        return "(bad)"
    text = _formatter().format(insn.decoded) if insn.decoded is not None else f".byte {insn.raw.hex(' ')}"
    return f"{'xen/kvm emulate prefix; ' if insn.emulate_prefix else ''}{text}"


# --- The kernel's view of one instruction (struct insn fields the kprobe code tests) ---------

INT3_INSN_OPCODE = 0xCC
_ADDRESS_SIZE_PREFIX = 0x67
_TWOBYTE_BOOSTABLE_ROWS = (  # arch/x86/kernel/kprobes/core.c twobyte_is_boostable, rows 0x00..0xf0
    "0011001011000000", "0000000000000001", "1111000000000000", "0100000000000000",
    "1111111111111111", "0000000000000000", "1111111111110011", "0000111100000011",
    "0000000000000000", "1111111111111111", "1101110011011101", "1111111100011111",
    "1100000011111111", "0111010011011101", "0110010011011101", "0111010011101110",
)
TWOBYTE_BOOSTABLE = frozenset(
    row * 16 + col for row, bits in enumerate(_TWOBYTE_BOOSTABLE_ROWS) for col, bit in enumerate(bits) if bit == "1"
)
# can_boost(): one-byte opcodes that are never boostable (6.1; mainline relaxed the groups in 6.9)
_NOT_BOOSTABLE = frozenset([0x62, *range(0x70, 0x80), 0x9A, 0xC0, 0xC1, 0xCC, 0xCD, 0xCE, 0xD0, 0xD1, 0xD2, 0xD3,
                            0xD6, *range(0xD8, 0xE0), 0xE0, 0xE1, 0xE2, 0xE3, 0xE8, 0xE9, 0xEB, 0xF0, 0xF1, 0xF2,
                            0xF3, 0xF4, 0xF6, 0xF7, 0xFE])


class KernelInsn(NamedTuple):
    """The fields of the kernel's `struct insn` that kprobes look at."""

    prefixes: bytes  # legacy prefixes (not REX/VEX)
    rex: int  # 0 when absent
    opcode: bytes  # 1 to 3 bytes, as insn->opcode (0f, 0f 38, 0f 3a escapes included)
    modrm: int | None  # the byte after the opcode: meaningful only for opcodes with ModRM


def kernel_view(insn: Insn) -> KernelInsn:
    return _kernel_view(insn.raw[len(XEN_EMULATE_PREFIX):] if insn.emulate_prefix else insn.raw)


@lru_cache(maxsize=1 << 16)
def _kernel_view(raw: bytes) -> KernelInsn:
    pos = 0
    while pos < len(raw) and raw[pos] in _LEGACY_PREFIXES:
        pos += 1
    prefixes = raw[:pos]
    rex = 0
    if pos < len(raw) and 0x40 <= raw[pos] <= 0x4F:
        rex = raw[pos]
        pos += 1
    if pos < len(raw) and raw[pos] in (0xC4, 0xC5):  # VEX: the kernel keeps 1 opcode byte after it
        pos += 3 if raw[pos] == 0xC4 else 2
        opcode = raw[pos : pos + 1]
    elif raw[pos : pos + 2] in (b"\x0f\x38", b"\x0f\x3a"):
        opcode = raw[pos : pos + 3]
    elif raw[pos : pos + 1] == b"\x0f":
        opcode = raw[pos : pos + 2]
    else:
        opcode = raw[pos : pos + 1]
    end = pos + len(opcode)
    return KernelInsn(prefixes, rex, opcode, raw[end] if end < len(raw) else None)


def _modrm_reg(modrm: int | None) -> int:
    return -1 if modrm is None else (modrm >> 3) & 7


def copy_refusal(insn: Insn) -> str | None:
    """Why `__copy_instruction()` fails on this instruction (-> -EINVAL), or None."""
    if not insn.valid:
        return "the kernel's decoder cannot decode it"
    if insn.emulate_prefix:
        return "it carries a Xen/KVM emulate prefix"
    k = kernel_view(insn)
    if k.opcode[:1] == bytes([INT3_INSN_OPCODE]):
        return "it is an int3"
    if k.opcode[:1] == b"\x17" or (k.opcode[:1] == b"\x8e" and _modrm_reg(k.modrm) == 2):
        return "it loads %ss (an exception-masking instruction)"
    return None


def emulation_refusal(insn: Insn) -> str | None:
    """Why `prepare_emulation()` refuses this instruction (-> -EOPNOTSUPP), or None."""
    k = kernel_view(insn)
    op = k.opcode[0] if k.opcode else -1
    if op in (0x9A, 0xEA):
        return "far call/jmp with an absolute segment"
    if op == 0xCF:
        return "iret"
    if k.opcode[:2] == b"\x0f\x01" and k.modrm is not None and k.modrm >> 6 == 3 and _modrm_reg(k.modrm) == 0:
        return "a VMX instruction (vmcall/vmlaunch/vmresume/vmxoff)"
    if op == 0xFF and k.modrm is not None and _modrm_reg(k.modrm) in (2, 3, 4, 5):
        reg = _modrm_reg(k.modrm)
        if reg in (3, 5):
            return "an indirect far call/jmp"
        if _ADDRESS_SIZE_PREFIX in k.prefixes:
            return "an indirect call/jmp with a 32-bit address size"
        if k.modrm >> 6 != 3:
            return "an indirect call/jmp through memory (only register operands are emulated)"
    return None


def is_endbr(word: bytes) -> bool:
    """arch/x86/include/asm/ibt.h is_endbr(): ENDBR or its seal poison."""
    return word in _ENDBR_WORDS


# is_exception_insn() (arch/x86/kernel/kprobes/core.c, >= 6.9): INT3, INT n, INTO, INT1, UD0/1/2
_EXCEPTION_OPCODES = (b"\xcc", b"\xcd", b"\xce", b"\xf1", b"\x0f\xff", b"\x0f\xb9", b"\x0f\x0b")


def is_exception_insn(insn: Insn) -> bool:
    return kernel_view(insn).opcode in _EXCEPTION_OPCODES


def can_boost(insn: Insn, in_extable: bool, *, relaxed_groups: bool = False) -> bool:
    """arch/x86/kernel/kprobes/core.c can_boost(); `relaxed_groups`: the >= 6.9 rules for the
    group opcodes ("x86/kprobes: Boost more instructions from grp2/3/4/5")."""
    if in_extable:
        return False
    k = kernel_view(insn)
    if len(k.opcode) == 2:
        return k.opcode[1] in TWOBYTE_BOOSTABLE
    if len(k.opcode) != 1:
        return False
    if 0x2E in k.prefixes or _ADDRESS_SIZE_PREFIX in k.prefixes:
        return False
    op = k.opcode[0]
    reg = _modrm_reg(k.modrm)
    if relaxed_groups:
        if op in (0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3):
            return reg != 6
        if op in (0xF6, 0xF7):
            return reg != 1
        if op == 0xFE:
            return reg in (0, 1)
        if op == 0xFF:
            return reg in (0, 1, 4)
    if op == 0xFF:
        return reg == 4
    return op not in _NOT_BOOSTABLE


CANNOT_BOOST = "it cannot run out of line (can_boost)"


def optprobe_refusal(insn: Insn, in_extable: bool, *, relaxed_groups: bool = False) -> str | None:
    """copy_optimized_instructions() on one instruction of a jump window: why it cannot be copied
    (`__copy_instruction`) or run out of line (`can_boost`), or None."""
    if in_extable:  # can_boost() refuses it, after __copy_instruction's own tests
        return copy_refusal(insn) or CANNOT_BOOST
    return _optprobe_refusal(insn.raw, insn.valid, insn.emulate_prefix, relaxed_groups)


@lru_cache(maxsize=1 << 16)
def _optprobe_refusal(raw: bytes, valid: bool, emulate_prefix: bool, relaxed_groups: bool) -> str | None:
    # Only the bytes decide (the same instruction recurs all over the kernel): the probe map asks
    # this for every instruction of every window.
    insn = Insn(0, len(raw), raw, None, emulate_prefix, valid)
    why = copy_refusal(insn)
    if why is None and not can_boost(insn, False, relaxed_groups=relaxed_groups):
        why = CANNOT_BOOST
    return why


_BRANCH_FLOWS = frozenset({iced.UNCONDITIONAL_BRANCH, iced.CONDITIONAL_BRANCH})


def jump_target(insn: Insn) -> int | None:
    """Target of a branch `insn_jump_into_range()` considers (jmp, jcc, loop, jcxz), else None."""
    if insn.decoded is None or insn.decoded.flow_control not in _BRANCH_FLOWS:
        return None  # cheap filter: only branches can be one of those
    k = kernel_view(insn)
    op = k.opcode[0] if k.opcode else -1
    relative = op in (0xE0, 0xE1, 0xE2, 0xE3, 0xE9, 0xEB) or (op & 0xF0) == 0x70 or (
        op == 0x0F and len(k.opcode) == 2 and (k.opcode[1] & 0xF0) == 0x80)
    if not relative or insn.decoded is None:
        return None
    return insn.decoded.near_branch_target


# ff /4, ff /5 (any ModRM with reg 4 or 5) and ea anywhere in the bytes: a function whose code
# has none holds no `is_indirect_jump` instruction (a prefilter before decoding it)
_INDIRECT_JUMP_BYTES = re.compile(rb"\xff[\x20-\x2f\x60-\x6f\xa0-\xaf\xe0-\xef]|\xea", re.DOTALL)


def may_hold_indirect_jump(code: bytes) -> bool:
    """False only if no instruction in `code` can be an `is_indirect_jump` one."""
    return _INDIRECT_JUMP_BYTES.search(code) is not None


def is_indirect_jump(insn: Insn) -> bool:
    """opt.c __insn_is_indirect_jump(): ``jmp *x`` (ff /4, ff /5) or ``ljmp ptr`` (ea)."""
    if b"\xff" not in insn.raw and b"\xea" not in insn.raw:
        return False  # cheap filter: neither opcode byte anywhere
    k = kernel_view(insn)
    if not k.opcode:
        return False
    return (k.opcode[0] == 0xFF and (_modrm_reg(k.modrm) & 6) == 4) or k.opcode[0] == 0xEA
