"""The CPUs whose boot-time patching probelint models (arch/x86/kernel/cpu/, cpufeatures.h).

`CpuProfile` names a QEMU CPU model the Debian 6.1 kernel was booted on (``ret``/``rethunk``/
``its`` are aliases): which features it has (`feature_bits`: the named features the guest's
/proc/cpuinfo shows, resolved through the image's x86_cap_flags, plus the unnamed synthetic ones
the CPU setup code forces, each with its source line) and how its return sites are patched
(`CpuProfile.keeps_return_thunk`). arch/x86/patching.py applies them; docs/cpu-profiles.md.
`DEFAULT_PROFILE` is the one default of every caller that is not told a profile.
"""

from __future__ import annotations

import enum
import functools
import weakref
import zlib
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from probelint.image.view import KernelImage

__all__ = ["DEFAULT_PROFILE", "PROFILE_NAMES", "UNNAMED_BITS", "CpuProfile", "feature_bits", "feature_column"]

# ---------------------------------------------------------------------------------------------
# CPU features. alternatives, apply_retpolines and apply_returns test boot_cpu_has(); what a CPU
# has is (a) CPUID bits, filtered by the kernel's CPU setup, and (b) synthetic bits that
# arch/x86/kernel/cpu/{common,amd,intel}.c and bugs.c force. The named ones of both are exactly
# what /proc/cpuinfo prints ("flags", "bugs"), resolved to bit numbers through the image's own
# x86_cap_flags/x86_bug_flags (so 6.1 and 6.12 numbering both work). The guest's lists below were
# recorded by `probelint vmtest` (the F/B lines of the initramfs) from the Debian 6.1 kernel under
# QEMU 7.2 TCG: QEMU's model table (target/i386/cpu.c) filtered by what TCG emulates is not
# reproducible offline, the recorded list is, and every vmtest run checks it again (compare.py).
# Unnamed synthetic features ("" in 6.1's cpufeatures.h) are not in /proc/cpuinfo: they are derived
# per model from the setup code, each with its source line (linux-source-6.1), and their bit
# numbers come from this table: cpufeatures.h of 6.1, with the 6.12 renumberings.
UNNAMED_BITS = {  # name: (6.1 bit, 6.12 bit)
    "SYSCALL32": (3 * 32 + 14, 3 * 32 + 14),
    "SYSENTER32": (3 * 32 + 15, 3 * 32 + 15),
    "LFENCE_RDTSC": (3 * 32 + 18, 20 * 32 + 2),
    "ALWAYS": (3 * 32 + 21, 3 * 32 + 21),
    "OSXSAVE": (4 * 32 + 27, 4 * 32 + 27),
    "RSB_VMEXIT": (7 * 32 + 13, 7 * 32 + 13),
    "RSB_CTXSW": (7 * 32 + 19, 7 * 32 + 19),
    "ZEN": (7 * 32 + 28, 7 * 32 + 28),
    "XENPV": (8 * 32 + 16, 8 * 32 + 16),
    "FENCE_SWAPGS_KERNEL": (11 * 32 + 5, 11 * 32 + 5),
    "RETPOLINE": (11 * 32 + 12, 11 * 32 + 12),
    "RETPOLINE_LFENCE": (11 * 32 + 13, 11 * 32 + 13),
    "RETHUNK": (11 * 32 + 14, 11 * 32 + 14),
    "UNRET": (11 * 32 + 15, 11 * 32 + 15),
    "CLEAR_CPU_BUF": (11 * 32 + 18, 3 * 32 + 18),
    "SRSO": (11 * 32 + 24, 11 * 32 + 24),
    "APIC_MSRS_FENCE": (11 * 32 + 27, 11 * 32 + 27),
    "INDIRECT_THUNK_ITS": (21 * 32 + 5, 21 * 32 + 6),
}


class _Model(NamedTuple):
    """One CPU as the booted 6.1 kernel sees it."""

    flags: str  # /proc/cpuinfo "flags" (named features)
    bugs: str  # /proc/cpuinfo "bugs"
    synthetic: tuple[str, ...]  # unnamed features the setup code forces (UNNAMED_BITS)
    returns: str  # apply_returns(): "ret" (no RETHUNK), "thunk", or "its" (its_return_thunk)
    qemu: str  # the QEMU -cpu model (and kernel command line) it was measured on
    # CPUID vendor, family and model of the QEMU model (target/i386/cpu.c): kernels before
    # changes.py "static-nops" pick their NOPs from them (arch_init_ideal_nops)
    cpuid: tuple[str, int, int]


_QEMU64_FLAGS = ("fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht "
                 "syscall nx lm rep_good nopl cpuid extd_apicid pni cx16 hypervisor lahf_lm cmp_legacy svm "
                 "3dnowprefetch vmmcall")
# qemu64 is an AMD family 15 CPU (QEMU's default vendor for it)
_QEMU64_CPUID = ("AuthenticAMD", 15, 107)
_AMD_K8 = ("ALWAYS",
           "SYSCALL32",  # amd.c:810 init_amd(), CONFIG_X86_64
           "LFENCE_RDTSC",  # amd.c:1232-1243 init_amd(), SSE2 present
           "FENCE_SWAPGS_KERNEL")  # bugs.c:943-962 spectre_v1: no SMAP (smap_works_speculatively() false)
# bugs.c:1858-1873 spectre_v2 AUTO without IBRS_ENHANCED or IBRS: retpoline, which forces
# RETPOLINE (bugs.c:1936) and the RSB fills (bugs.c:1740-1741); dmesg "Spectre V2 : Mitigation: Retpolines"
_RETPOLINE = ("RETPOLINE", "RSB_CTXSW", "RSB_VMEXIT")

_MODELS = {
    "qemu64": _Model(_QEMU64_FLAGS, "fxsave_leak sysret_ss_attrs null_seg swapgs_fence amd_e400 spectre_v1 spectre_v2",
                     (*_AMD_K8, *_RETPOLINE), "ret", "qemu64", _QEMU64_CPUID),
    # spectre_v2=off (also mitigations=off, and what eIBRS CPUs get: bugs.c:1922 SPECTRE_V2_EIBRS forces
    # no RETPOLINE): no RETPOLINE, so apply_retpolines() turns every thunk call into call/jmp *%reg
    "noretpoline": _Model(_QEMU64_FLAGS, "fxsave_leak sysret_ss_attrs null_seg swapgs_fence amd_e400 spectre_v1 "
                          "spectre_v2", _AMD_K8, "ret", "qemu64 spectre_v2=off", _QEMU64_CPUID),
    "EPYC-Rome": _Model(
        "fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx "
        "mmxext pdpe1gb rdtscp lm rep_good nopl cpuid extd_apicid pni pclmulqdq monitor ssse3 fma cx16 sse4_1 "
        "sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy svm cr8_legacy abm sse4a "
        "3dnowprefetch ssbd vmmcall fsgsbase bmi1 avx2 smep bmi2 adx smap clflushopt clwb xsaveopt xgetbv1 arat "
        "npt umip",
        "fxsave_leak sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass retbleed smt_rsb srso",
        ("ALWAYS", "SYSCALL32", "LFENCE_RDTSC", *_RETPOLINE,
         "OSXSAVE",  # fpu/xstate.c:894 fpu__init_system_xstate(), XSAVE present
         "FENCE_SWAPGS_KERNEL",  # bugs.c:943-962: FSGSBASE present
         "ZEN",  # amd.c:1074 init_amd_zen_common(), family 0x17
         "RETHUNK", "UNRET",  # bugs.c:1102-1103 retbleed=unret ("RETBleed: Mitigation: untrained return thunk")
         "SRSO"),  # bugs.c:2795-2802 srso safe RET, family 0x17 ("active return thunk: srso_return_thunk")
        # Not derivable offline: the "ssbd" flag comes from amd.c:674 (LS_CFG_SSBD, if the LS_CFG MSR
        # reads back under TCG) or common.c (AMD_SSBD/VIRT_SSBD CPUID): LS_CFG_SSBD, AMD_SSBD and
        # MSR_SPEC_CTRL (9 alternative sites, all in spec-ctrl code) are taken as absent.
        "thunk", "EPYC-Rome", ("AuthenticAMD", 0x17, 49)),
    "Skylake-Client-v4": _Model(
        "fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx "
        "rdtscp lm constant_tsc rep_good nopl xtopology cpuid pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe "
        "popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm pti fsgsbase bmi1 avx2 smep bmi2 erms adx smap "
        "xsaveopt xgetbv1 arat",
        "cpu_meltdown spectre_v1 spectre_v2 spec_store_bypass l1tf mds swapgs itlb_multihit srbds mmio_stale_data "
        "retbleed gds bhi its",
        ("ALWAYS", *_RETPOLINE, "OSXSAVE", "FENCE_SWAPGS_KERNEL",
         "SYSENTER32",  # intel.c:354 init_intel(), CONFIG_X86_64
         "LFENCE_RDTSC",  # intel.c:685-686 init_intel(), SSE2 present
         "APIC_MSRS_FENCE",  # common.c:1972 identify_cpu() (only AMD/Hygon clear it)
         "CLEAR_CPU_BUF",  # bugs.c:270-277 MDS ("Clear CPU buffers attempted, no microcode")
         # bugs.c:1266-1270 ITS aligned thunks: RETHUNK with its_return_thunk; INDIRECT_THUNK_ITS
         # only without RETPOLINE, so retpoline sites stay thunk calls here
         "RETHUNK"),
        "its", "Skylake-Client-v4", ("GenuineIntel", 6, 94)),
}
# the first profile names, kept: each is the QEMU model its return-site behaviour was measured on
_ALIASES = {"ret": "qemu64", "rethunk": "EPYC-Rome", "its": "Skylake-Client-v4"}


@functools.cache
def _cache_key(name: str) -> str:
    # crc32, not a cryptographic digest: it only tells model edits apart, and zlib is loaded anyway
    return f"{name}-{zlib.crc32(repr((_MODELS[name], sorted(UNNAMED_BITS.items()))).encode()):08x}"


class CpuProfile(enum.Enum):
    QEMU64 = "qemu64"
    NORETPOLINE = "noretpoline"
    EPYC_ROME = "EPYC-Rome"
    SKYLAKE_CLIENT_V4 = "Skylake-Client-v4"
    RET = "qemu64"  # aliases (same members)
    RETHUNK = "EPYC-Rome"
    ITS = "Skylake-Client-v4"

    @classmethod
    def _missing_(cls, value: object) -> CpuProfile | None:
        return cls(_ALIASES[value]) if isinstance(value, str) and value in _ALIASES else None

    @property
    def model(self) -> _Model:
        return _MODELS[self.value]

    @property
    def cache_key(self) -> str:
        """Key of this profile's decode facts: changes whenever its feature model does."""
        return _cache_key(self.value)

    def keeps_return_thunk(self, site: int) -> bool:
        """cpu_wants_rethunk_at() (alternative.c)."""
        if self.model.returns == "its":
            return not site & 0x20
        return self.model.returns == "thunk"


PROFILE_NAMES = (*_ALIASES, *_MODELS)  # every --cpu-profile spelling

# Intel CPUs unaffected by retbleed/ITS and mitigations=off boxes patch returns to `ret`: the
# most common deployment of a 6.1 kernel in clouds and what qemu64 does.
DEFAULT_PROFILE = CpuProfile.QEMU64


def _pointer_array(vmlinux: KernelImage, name: str, count: int) -> list[str | None]:
    """A ``const char *name[count]`` array of the vmlinux (x86_cap_flags, x86_bug_flags)."""
    base = vmlinux.raw_symbol(name)
    if base is None:
        return []
    raw = vmlinux.read(base, 8 * count)
    out: list[str | None] = []
    for i in range(len(raw) // 8):
        ptr = int.from_bytes(raw[8 * i : 8 * i + 8], "little")
        text = vmlinux.read(ptr, 32) if ptr else b""
        out.append(text.split(b"\0", 1)[0].decode() if text and b"\0" in text else None)
    return out


def feature_column(image: KernelImage) -> int:
    """Which UNNAMED_BITS numbering `image`'s kernel uses (0: 6.1, 1: 6.12's; changes.py
    "cpufeature-numbering")."""
    from probelint.image.changes import applies_to_version

    vmlinux = image.vmlinux
    version = vmlinux.config.version if vmlinux is not None else None  # the banner's, kept in the index
    return 1 if applies_to_version("cpufeature-numbering", version) else 0


_FEATURES: weakref.WeakKeyDictionary[KernelImage, dict[CpuProfile, frozenset[int]]] = weakref.WeakKeyDictionary()


def feature_bits(image: KernelImage, profile: CpuProfile) -> frozenset[int]:
    """The boot_cpu_has() bits of `profile` in `image`'s kernel (a module: its vmlinux's numbering).
    Named features need the vmlinux's x86_cap_flags; without it only the unnamed ones are known."""
    per_image = _FEATURES.setdefault(image, {})
    known = per_image.get(profile)
    if known is not None:
        return known
    vmlinux = image.vmlinux
    m = profile.model
    bits = {UNNAMED_BITS[name][feature_column(image)] for name in m.synthetic}
    if vmlinux is not None:
        ncapints = 22  # cpufeatures.h NCAPINTS of 6.1 and 6.12; NBUGINTS 2
        caps = {name: i for i, name in enumerate(_pointer_array(vmlinux, "x86_cap_flags", ncapints * 32)) if name}
        bugs = {name: ncapints * 32 + i for i, name in enumerate(_pointer_array(vmlinux, "x86_bug_flags", 2 * 32))
                if name}
        bits.update(caps[f] for f in m.flags.split() if f in caps)
        bits.update(bugs[b] for b in m.bugs.split() if b in bugs)
    per_image[profile] = frozenset(bits)
    return per_image[profile]
