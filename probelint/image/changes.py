"""The kernel's behaviour changes that move probelint's verdicts: one table, one row per change.

Each row names the change, the upstream commit (its subject and mainline id), the first
mainline version, the rules it moves, and -- where the image shows it -- a detector: a symbol, a
section, a table layout, a code constant. Distributions backport (Debian's 6.1.192 carries the
unique-symbol check of 6.6; 5.10.223 does not), so a detector's answer wins over the version; the
version decides only when the image shows nothing either way, and an image without a version is
taken as 6.1, the model's base. Rules ask `Kernel.does(ROW)`, never the version number, and the
rule pages cite the rows (`probelint -v` prints each row's answer and its evidence).

Read from the kernel's own code: Debian's linux-source-5.10 (5.10.223), -6.1 (6.1.192), -7.2
(7.2.13), and the 6.12.117 images (docs/linux-versions.md).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

__all__ = [
    "BASE_VERSION",
    "CHANGES",
    "KNOWN_SECTIONS",
    "VALIDATED",
    "Change",
    "Evidence",
    "applies",
    "applies_to_version",
    "assumptions",
    "cite",
    "detected",
]

BASE_VERSION = (6, 1, 192)  # what an image without a version string is taken to be (Debian's 6.1)

# Series checked against a booted kernel with `probelint vmtest` (docs/validation*.md).
VALIDATED = ((5, 10), (6, 1), (6, 12), (7, 2), (7, 3))  # sample sizes per series: docs/linux-versions.md


class KernelVersion(Protocol):
    """image/kversion.KernelVersion as this module uses it (kversion asks this table: no import back)."""

    major: int
    minor: int

    @property
    def key(self) -> tuple[int, int, int]: ...

    def series(self) -> tuple[int, int]: ...


# An image/view.KernelImage (vmlinux or module); typed loosely for the same reason.
KernelImage = Any


class Evidence(NamedTuple):
    value: bool
    reason: str


Detector = Callable[[KernelImage], Evidence | None]


class Change(NamedTuple):
    id: str
    title: str  # the upstream commit's subject
    commit: str  # its mainline id (12 hex digits), found in the kernel's history
    first: tuple[int, int]  # first mainline release carrying it
    effect: str  # what it changes in the verdicts
    rules: tuple[str, ...]
    detect: Detector | None = None
    stable: tuple[tuple[int, int, int], ...] = ()  # first stable releases of older series carrying it


def _symbol(name: str, what: str) -> Detector:
    """Present iff `name` is a kallsyms symbol of the vmlinux (a static function the change added)."""

    def detect(image: KernelImage) -> Evidence | None:
        if image.is_module:
            return None
        if image.raw_symbol(name) is not None:
            return Evidence(True, f"{name} is defined ({what})")
        if image.raw_symbol("register_kprobe") is None:
            return None  # no kprobes in this image: its absence says nothing
        return Evidence(False, f"register_kprobe is there, {name} is not")

    return detect


def _gone(name: str, what: str) -> Detector:
    """The change removed `name`: carried iff the vmlinux (with kprobes) no longer defines it."""
    present = _symbol(name, what)

    def detect(image: KernelImage) -> Evidence | None:
        found = present(image)
        if found is None:
            return None
        return Evidence(not found.value, found.reason + (": the older code" if found.value else ""))

    return detect


def _vmlinux_symbol(name: str, what: str) -> Detector:
    """As `_symbol`, asked of a module's vmlinux too (a table layout both share)."""
    present = _symbol(name, what)

    def detect(image: KernelImage) -> Evidence | None:
        kernel = image.vmlinux if image.is_module else image
        return present(kernel) if kernel is not None else None

    return detect


def _any_symbol(names: tuple[str, ...], what: str) -> Detector:
    """As `_symbol`, for a change whose function later kernels renamed (or the compiler may inline)."""
    tests = [_symbol(name, what) for name in names]

    def detect(image: KernelImage) -> Evidence | None:
        found = None
        for test in tests:
            found = test(image)
            if found is None or found.value:
                return found
        return found

    return detect


def _rodata(needle: bytes, what: str) -> Detector:
    def detect(image: KernelImage) -> Evidence | None:
        sec = None if image.is_module else image.elf.section(".rodata")
        if sec is None or image.raw_symbol("register_kprobe") is None:
            return None
        found = needle in image.elf.section_bytes(sec)
        return Evidence(found, f"{needle.decode()!r} is {'' if found else 'not '}in .rodata ({what})")

    return detect


def _alt_entry_size(image: KernelImage) -> Evidence | None:
    """.altinstructions' sh_entsize, which the linker keeps from the assembler's merge entry size."""
    sec = image.elf.section(".altinstructions")
    size = sec.entsize if sec is not None else 0
    if size in (12, 14):
        return Evidence(size == 14, f".altinstructions entries are {size} bytes")
    return None


def _udb_poison(image: KernelImage) -> Evidence | None:
    """is_endbr() compares with the poison constant: `0f 1f 40 d6` (UDB) or `66 0f 1f 00`."""
    if image.is_module:
        return None
    sym = image.symbols.lookup_name("is_endbr") or image.symbols.lookup_name("__is_endbr")
    if sym is None or not sym.size:
        return None
    code = image.read(sym.address, sym.size)
    if b"\x0f\x1f\x40\xd6" in code:
        return Evidence(True, f"{sym.name} compares with 0f 1f 40 d6")
    if b"\x66\x0f\x1f\x00" in code:
        return Evidence(False, f"{sym.name} compares with 66 0f 1f 00")
    return None


CHANGES: dict[str, Change] = {c.id: c for c in (
    Change("unique-symbol", "tracing/kprobes: Return EADDRNOTAVAIL when func matches several symbols",
           "b022f0c7e404", (6, 6),
           "kprobe_events refuses a plain SYM that names several symbols (KP102); 6.1.y has it backported, "
           "5.10.y does not", ("KP102",),
           _rodata(b"The symbol is not unique", "trace_probe.h NON_UNIQ_SYMBOL"),
           stable=((6, 1, 60),)),  # 6.1.60 refuses (aquasecurity/tracee#3653); 5.10.223 does not
    Change("validate-probe-symbol", "tracing/kprobes: Add symbol counting check when module loads",
           "9d8616034f16", (6, 11),
           "kprobe_events validates the symbol while parsing: unknown or non-unique -> EINVAL (not ENOENT/"
           "EADDRNOTAVAIL), and before the return-probe entry test (KP101, KP102, KERNEL_ORDER)",
           ("KP101", "KP102"), _symbol("validate_probe_symbol", "kernel/trace/trace_kprobe.c")),
    Change("vmlinux-symbol-first", "bpf: Prefer vmlinux symbols over module symbols for unqualified kprobes",
           "1870ddcd94b0", (7, 1),
           "number_of_same_symbols() returns the vmlinux's count of a plain SYM when the vmlinux has it: "
           "copies in loaded modules no longer make it non-unique (KP102; jhash, cts_cbc_encrypt with "
           "aesni_intel on the booted 7.2.13); a name only modules hold is counted in them as before",
           ("KP102",), stable=((7, 0, 10),)),  # 7.0.10 carries it; Debian's 6.1.192 and 6.12.118 sources do not
    Change("ibt-entry-adjust", "x86/ibt,kprobes: Cure sym+0 equals fentry woes", "cc66bb914578", (5, 18),
           "with IBT, SYM+0 and SYM+4 of a function starting with ENDBR are the same probe at +4 "
           "(arch_adjust_kprobe_addr)", ("KP201",), _symbol("arch_adjust_kprobe_addr", "kernel/kprobes.c")),
    Change("static-nops", "x86: Remove dynamic NOP selection", "a89dfde3dc3c", (5, 13),
           "every NOP boot patching writes is one of the fixed x86_nops (0f 1f ...); before, ideal_nops was "
           "chosen per CPU (arch_init_ideal_nops): k8_nops (66 66 90 ...: a 5..8-byte pad is two "
           "instructions) on AMD family <= 0xf such as qemu64, p6_nops elsewhere; moves the boundaries inside "
           "patched paravirt and alternative sites (KP104) and what a jump window holds", ("KP104", "KP207"),
           _gone("ideal_nops", "arch/x86/kernel/alternative.c arch_init_ideal_nops")),
    Change("paravirt-alternatives", "x86/paravirt: Switch functions with custom code to ALTERNATIVE",
           "fafe5e74229f", (5, 13),
           "paravirt sites are patched with a direct call (or NOPs) only; before, apply_paravirt called "
           "native_patch, which writes the native instruction for the irq, cr2/cr3, wbinvd and native "
           "spinlock ops (sti, cli, pushf; pop %rax, movb $0,(%rdi), ...), mov %rdi,%rax for "
           "_paravirt_ident_64, ud2 for an empty op: a window over such a site can be boosted (KP207) and "
           "its boundaries differ (KP104)", ("KP104", "KP207"),
           _gone("native_patch", "arch/x86/kernel/paravirt_patch.c")),
    Change("bug-entry-format", "x86/bug: Add BUG_FORMAT basics", "0a52d339d35d", (6, 19),
           "struct bug_entry gains a format rel32 after bug_addr: 16-byte __bug_table entries (with "
           "DEBUG_BUGVERBOSE); read as 12-byte ones, most BUG/WARN sites are lost and the kernel's find_bug "
           "EINVAL is taken for an unprobeable ud2 (KP116) or a plain instruction (merged with core-bugs-2025-12-01 "
           "for 6.19; __warn_args is its x86_64/bug: Implement __WARN_printf() 5b472b6e5bd9)", ("KP109", "KP116"),
           _vmlinux_symbol("__warn_args", "lib/bug.c HAVE_ARCH_BUG_FORMAT_ARGS")),
    Change("alt-instr-flags", "x86/alternatives: Add alt_instr.flags", "5d1dd961e743", (6, 3),
           "alt_instr grows from 12 to 14 bytes (u16 cpuid -> u32 ft_flags): which sites boot patching rewrites",
           ("KP110", "KP207", "KP208"), _alt_entry_size),
    Change("alt-jmp-int3-pad", "x86/alternative: Support relocations in alternatives", "270a69c4485d",
           (6, 5),
           "a replacement's jmp rel32 shortened to jmp rel8 is followed by int3s (memset INT3_INSN_OPCODE), not "
           "recompute_jump()'s NOPs: the bytes after the short jmp of a static_cpu_has() or other alternative "
           "site are int3s, which can_probe refuses (KP116, EILSEQ) where a NOP was a probeable boundary",
           ("KP116", "KP104"),
           _any_symbol(("__apply_relocation", "apply_relocation", "text_poke_apply_relocation"),
                       "arch/x86/kernel/alternative.c")),
    Change("optprobe-indirect-jump-skip",
           "x86/retpoline,kprobes: Skip optprobe check for indirect jumps with retpolines and IBT", "833fd800bf56",
           (6, 5),
           "with RETPOLINE or IBT configured the indirect-jump test (and the thunk-range test) is gone",
           ("KP205",)),
    Change("exception-insn", "x86/kprobes: Prohibit kprobing on INT and UD", "e884edbb844f", (6, 9),
           "can_probe refuses INT3, INT n, INTO, INT1, UD0/1/2 at the address: EILSEQ", ("KP116",)),
    Change("boost-groups", "x86/kprobes: Boost more instructions from grp2/3/4/5", "290eb13f1a65", (6, 9),
           "can_boost accepts shifts, TEST, INC/DEC of the group opcodes in a jump window", ("KP207",)),
    Change("mitigation-config-names", "x86/bugs: Rename CONFIG_RETPOLINE => CONFIG_MITIGATION_RETPOLINE (and "
           "the rest of the series)", "aefb2f2e619b", (6, 9),
           "a --config file names RETPOLINE, RETHUNK, SRSO, ... as MITIGATION_*", ()),
    Change("cpufeature-numbering", "x86/cpu, kvm: Move X86_FEATURE_LFENCE_RDTSC to its native leaf", "84168ae786f8",
           (6, 12),
           "the boot_cpu_has() bit numbers of the unnamed synthetic features (boot patching per CPU profile): "
           "mainline moved LFENCE_RDTSC out of word 3 in 6.3 and later gave CLEAR_CPU_BUF (6.8) and "
           "INDIRECT_THUNK_ITS (6.15) bits that 6.1.y's backports number otherwise; the 6.12 column is "
           "checked on 6.12.117, 7.2 and 7.3, the layout of 6.3..6.11 on no kernel (arch/x86/cpu.py UNNAMED_BITS)",
           ("KP110", "KP205", "KP207")),
    Change("endbr-poison-udb", "x86,ibt: Use UDB instead of 0xEA (ENDBR poison 0f 1f 40 d6, nopl -42(%rax))",
           "85a2d4a890dc", (6, 18),
           "the bytes a sealed ENDBR holds at run time (same length as 66 0f 1f 00: boundaries unchanged)",
           ("KP104",), _udb_poison),
)}


DETECTED = tuple(c.id for c in CHANGES.values() if c.detect is not None)  # the rows an image can answer


def detected(change_id: str, image: KernelImage) -> Evidence | None:
    """The row's detector asked of `image`, once per build: the answers live in the image's
    build-id index (`image.detections`), as a detector may read megabytes (unique-symbol scans
    .rodata: ~7 ms of a warm run)."""
    known: dict[str, Evidence | None] | None = getattr(image, "detections", None)
    if known is None:
        return CHANGES[change_id].detect(image)  # type: ignore[misc]
    if change_id not in known:
        known[change_id] = CHANGES[change_id].detect(image)  # type: ignore[misc]
    return known[change_id]


def cite(change_id: str) -> str:
    """How a message names a row: its id, upstream subject, commit and first mainline release."""
    change = CHANGES[change_id]
    return f"change {change.id}: \"{change.title}\", {change.commit}, Linux {change.first[0]}.{change.first[1]}"


_SEEN: weakref.WeakKeyDictionary[KernelImage, dict[str, Evidence]] = weakref.WeakKeyDictionary()


def applies_to_version(change_id: str, version: KernelVersion | None) -> bool:
    """The row's answer from the version alone (no version: `BASE_VERSION`)."""
    change = CHANGES[change_id]
    key = version.key if version is not None else BASE_VERSION
    return key[:2] >= change.first or any(key[:2] == s[:2] and key >= s for s in change.stable)


def applies(change_id: str, image: KernelImage | None, version: KernelVersion | None) -> Evidence:
    """Does the kernel of `image` (its vmlinux) carry the change? The detector's answer where the
    image shows it, else the version's."""
    change = CHANGES[change_id]
    try:
        memo = _SEEN.setdefault(image, {}) if image is not None else {}
    except TypeError:  # an object that cannot be weakly referenced: answer without a memo
        memo = {}
    found = memo.get(change_id)
    if found is not None:
        return found
    if change.detect is not None and image is not None:
        found = detected(change_id, image)
    if found is None:
        value = applies_to_version(change_id, version)
        shown = str(version) if version is not None else "unknown, taken as " + ".".join(map(str, BASE_VERSION))
        found = Evidence(value, f"version {shown} ({'on or after' if value else 'before'} "
                                f"{change.first[0]}.{change.first[1]}"
                                + "".join(f", {'.'.join(map(str, st))}" for st in change.stable) + ")")
    memo[change_id] = found
    return found


# Sections of the validated images (5.10, 6.1, 6.12, 7.2 cloud builds) whose meaning probelint knows or
# that cannot move a verdict; a new special section is a layout nobody checked.
KNOWN_SECTIONS = frozenset((
    "", ".text", ".rodata", ".pci_fixup", "__ksymtab", "__ksymtab_gpl", "__kcrctab", "__kcrctab_gpl",
    "__ksymtab_strings", "__kflagstab", "__init_rodata", "__param", "__modver", "__ex_table", ".notes", ".BTF",
    ".BTF_ids", ".data", "__bug_table", ".orc_header", ".orc_unwind_ip", ".orc_unwind", ".orc_lookup",
    ".vvar", ".data..percpu", ".init.text", ".altinstr_aux", ".init.data", ".x86_cpu_dev.init",
    ".parainstructions", ".retpoline_sites", ".return_sites", ".call_sites", ".ibt_endbr_seal",
    ".altinstructions", ".altinstr_replacement", ".iommu_table", ".apicdrivers", ".exit.text", ".exit.data",
    ".smp_locks", ".data_nosave", ".bss", ".brk", ".init.scratch", ".comment", ".symtab", ".strtab",
    ".shstrtab", ".entry.text", ".noinstr.text", ".kprobes.text", ".head.text", "__tracepoints",
    "__tracepoints_ptrs", "__tracepoints_strings", ".static_call.text", ".static_call_sites",
    ".static_call_tramp_key", "__jump_table", "__mcount_loc", "_kprobe_blacklist", ".cpuidle.text",
    ".lockref.text", ".sched.text", ".spinlock.text", ".irqentry.text", ".softirqentry.text",
    ".fixup", ".gnu.warning", ".note.gnu.build-id", ".note.Linux", ".note.Xen", ".init.rodata",
    "__start_rodata", ".rodata1", ".data.once", ".data..ro_after_init", ".tm_clone_table", ".eh_frame",
))
# runtime_{ptr,shift,mask}_SYM: runtime_const_fixup() rewrites an immediate (asm/runtime-const.h; mask from
# 7.3), never an instruction's length: boundaries and windows are the file's
_IGNORED_PREFIXES = (".debug_", ".rela", ".rel.", "runtime_ptr_", "runtime_shift_", "runtime_mask_", ".note")


def _unknown_sections(image: KernelImage) -> list[str]:
    names = [s.name for s in image.elf.sections]
    return sorted(n for n in names if n not in KNOWN_SECTIONS and not n.startswith(_IGNORED_PREFIXES))


def assumptions(vmlinux: KernelImage | None, version: KernelVersion | None) -> list[str]:
    """What probelint assumes of a kernel it was not validated on: one sentence per reason, empty for a
    validated series with no unknown special section. An image without a version (a test fixture, a
    stripped banner) says nothing here: `probelint -v` prints the 6.1 base it is taken as."""
    if version is None:
        return []
    out = []
    if version.series() not in VALIDATED:
        shown = ", ".join(f"{a}.{b}" for a, b in VALIDATED)
        older, newer = version.series() < VALIDATED[0], version.series() > VALIDATED[-1]
        where = "older than every" if older else "newer than every" if newer else "between the"
        nearest = min(VALIDATED, key=lambda s: (abs((s[0] - version.major) * 100 + s[1] - version.minor), s))
        out.append(f"Linux {version.major}.{version.minor} is {where} validated kernels ({shown}): verdicts "
                   f"assume the behaviour of {nearest[0]}.{nearest[1]} plus the change table's rows, unchecked on "
                   "a booted kernel")
    if vmlinux is not None and not vmlinux.is_module:
        unknown = _unknown_sections(vmlinux)
        if unknown:
            out.append(f"special section{'s' if len(unknown) > 1 else ''} {', '.join(unknown[:6])}"
                       f"{' ...' if len(unknown) > 6 else ''} unknown to probelint: the code they describe is "
                       "assumed left as it is in the file")
    return out
