"""Which kernel an image is, and which build options it was built with, read from the ELF alone.

`detect_version` parses the banner a vmlinux carries (``linux_banner``: ``Linux version
6.1.0-56-cloud-amd64 (...) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)``) or a module's
``vermagic=`` (``6.12.117+deb12-cloud-amd64 SMP preempt mod_unload modversions``). Distribution
kernels name their ABI, not their upstream release, in the release string (Debian's 6.1 is
``6.1.0-56``): when the banner also names the distribution version (``Debian 6.1.192-2``), the
patch level is taken from there.

`infer_config` answers, for the few build options probelint's rules depend on, "was it set?",
each with the evidence as a sentence: from an embedded config (``CONFIG_IKCONFIG``,
``kernel_config_data``) when there is one, else from symbols, sections and code the option leaves
behind. An option with no evidence either way is `None` ("unknown"), never guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probelint.image.kversion import (
    MAX_KCONFIG,
    ConfigInference,
    KernelConfig,
    KernelVersion,
    kconfig_name,
    parse_config,
    parse_version,
)

if TYPE_CHECKING:
    from probelint.image.view import KernelImage

__all__ = ["detect_version", "infer_config", "table_layout_version"]

ENDBR64 = b"\xf3\x0f\x1e\xfa"
ENDBR_POISON = b"\x66\x0f\x1f\x00"  # arch/x86/include/asm/ibt.h gen_endbr_poison() (6.2 .. 6.x)


def detect_version(image: KernelImage) -> KernelVersion | None:
    """The version of a vmlinux (its ``linux_banner``) or a module (its ``vermagic``)."""
    text = image.version
    return parse_version(text) if text else None


class _Facts:
    """What an image shows: defined names, referenced (undefined) names, sections."""

    def __init__(self, image: KernelImage) -> None:
        self.image = image
        self.module = image.is_module
        self.defined: set[str] = set()
        self.undefined: set[str] = set()
        self.prefix_counts: dict[str, int] = {"__pfx_": 0, "__cfi_": 0}
        for name, defined in image.symbol_names():
            if not defined:
                self.undefined.add(name)
                continue
            self.defined.add(name)
            for prefix in self.prefix_counts:
                if name.startswith(prefix):
                    self.prefix_counts[prefix] += 1

    def has(self, name: str) -> bool:
        return name in self.defined

    def refs(self, name: str) -> bool:
        return name in self.defined or name in self.undefined

    def section(self, name: str) -> int | None:
        """Size of section `name`, or None if absent."""
        sec = self.image.elf.section(name)
        return None if sec is None else sec.size

    def table_bytes(self, start: str, stop: str, section: str) -> int | None:
        """Size of a table: from its vmlinux bounds symbols, or a module's section."""
        if not self.module:
            lo, hi = self.image.raw_symbol(start), self.image.raw_symbol(stop)
            if lo is not None and hi is not None:
                return hi - lo
        return self.section(section)

    def rodata_has(self, needle: bytes) -> bool | None:
        sec = self.image.elf.section(".rodata")
        if sec is None:
            return None
        return needle in self.image.elf.section_bytes(sec)


def _embedded_config(image: KernelImage) -> dict[str, str] | None:
    """CONFIG_IKCONFIG: gzip data between ``kernel_config_data`` and ``kernel_config_data_end``
    (kernel/configs.c; MAGIC_START "IKCFG_ST" precedes it)."""
    if image.is_module:
        return None
    lo, hi = image.raw_symbol("kernel_config_data"), image.raw_symbol("kernel_config_data_end")
    if lo is None or hi is None or hi <= lo:
        return None
    data = image.read(lo, hi - lo)
    start = data.find(b"\x1f\x8b")
    if start < 0:
        return None
    import zlib  # IKCONFIG: read once, when the index is built

    try:
        inflate = zlib.decompressobj(wbits=31)
        text = inflate.decompress(data[start:], MAX_KCONFIG)
    except zlib.error:
        return None
    if inflate.unconsumed_tail:  # more than a .config inflates to: not one (a planted bomb)
        return None
    return parse_config(text.decode(errors="replace"))


def _endbr_at_entries(image: KernelImage, limit: int = 64) -> tuple[int, int]:
    """(functions starting with ENDBR or its poison, functions looked at): the fentry-bearing
    functions, whose fentry call sits at +0 without IBT and at +4 with it."""
    sites = image.ftrace_sites
    seen = hits = 0
    for site in sites[:: max(1, len(sites) // limit)][:limit]:
        seen += 1
        if image.read(site - 4, 4) in (ENDBR64, ENDBR_POISON):
            hits += 1
    return hits, seen


def infer_config(image: KernelImage) -> KernelConfig:
    """The build options probelint cares about, each with the evidence for its value."""
    version = detect_version(image)
    embedded = _embedded_config(image)
    facts = _Facts(image)
    out: dict[str, ConfigInference] = {}

    def put(option: str, value: bool | None, reason: str) -> None:
        if embedded is not None:
            name = "CONFIG_" + kconfig_name(option, version)
            if name in embedded:
                val = embedded[name]
                out[option] = ConfigInference(option, val in ("y", "m"), f"embedded config: {name}={val}")
                return
        out[option] = ConfigInference(option, value, reason)

    where = "module" if facts.module else "vmlinux"

    # X86_KERNEL_IBT: objtool --ibt writes .ibt_endbr_seal (the ENDBRs apply_seal_endbr poisons);
    # the compiler (-fcf-protection=branch) puts ENDBR64 before the fentry call.
    seal = facts.table_bytes("__ibt_endbr_seal", "__ibt_endbr_seal_end", ".ibt_endbr_seal")
    if seal:
        put("X86_KERNEL_IBT", True, f"{where} has an ENDBR seal list (.ibt_endbr_seal, {seal // 4} entries)")
    else:
        hits, seen = _endbr_at_entries(image)
        if seen and hits * 2 > seen:
            put("X86_KERNEL_IBT", True, f"ENDBR64 precedes the fentry call in {hits} of {seen} sampled functions")
        elif seen:
            put("X86_KERNEL_IBT", False,
                f"no .ibt_endbr_seal, and ENDBR64 precedes the fentry call in only {hits} of {seen} sampled functions")
        else:
            put("X86_KERNEL_IBT", None, "no .ibt_endbr_seal and no ftrace sites to look at")

    # RETPOLINE: the __x86_indirect_thunk_<reg> thunks (objtool lists their callers in .retpoline_sites)
    retp = facts.table_bytes("__retpoline_sites", "__retpoline_sites_end", ".retpoline_sites")
    if facts.refs("__x86_indirect_thunk_rax"):
        extra = f", {retp // 4} .retpoline_sites entries" if retp else ""
        put("RETPOLINE", True, f"{where} {'defines' if facts.has('__x86_indirect_thunk_rax') else 'calls'} "
                               f"__x86_indirect_thunk_rax{extra}")
    else:
        put("RETPOLINE", False, f"{where} has no __x86_indirect_thunk_rax")

    # RETHUNK: returns compiled as `jmp __x86_return_thunk`, listed in .return_sites
    rets = facts.table_bytes("__return_sites", "__return_sites_end", ".return_sites")
    if rets and facts.refs("__x86_return_thunk"):
        put("RETHUNK", True, f"__x86_return_thunk and {rets // 4} .return_sites entries")
    elif facts.refs("__x86_return_thunk") or rets is not None:
        put("RETHUNK", False, "no .return_sites entries (returns are plain ret)")
    else:
        put("RETHUNK", False, f"{where} has neither __x86_return_thunk nor .return_sites")

    # CALL_PADDING / FUNCTION_PADDING_BYTES: __pfx_<fn> symbols over the NOP padding before fn
    pfx = facts.prefix_counts["__pfx_"]
    if pfx:
        put("CALL_PADDING", True, f"{pfx} __pfx_ padding symbols (PREFIX_SYMBOLS)")
    else:
        put("CALL_PADDING", False, "no __pfx_ symbols")

    # CALL_DEPTH_TRACKING: objtool writes .call_sites for callthunks_patch_builtin_calls
    calls = facts.table_bytes("__call_sites", "__call_sites_end", ".call_sites")
    if calls or facts.has("skl_call_thunk_template"):
        what = f"{calls // 4} .call_sites entries" if calls else "skl_call_thunk_template"
        put("CALL_DEPTH_TRACKING", True, f"{where} has {what}")
    else:
        put("CALL_DEPTH_TRACKING", False, "no .call_sites and no skl_call_thunk_template")

    # CFI_CLANG (CONFIG_CFI in 2025+): __cfi_<fn> preambles and the kCFI trap table
    cfi = facts.prefix_counts["__cfi_"]
    traps = facts.table_bytes("__start___kcfi_traps", "__stop___kcfi_traps", ".kcfi_traps")
    if cfi or traps:
        put("CFI_CLANG", True, f"{cfi} __cfi_ preamble symbols" + (f", .kcfi_traps of {traps} bytes" if traps else ""))
    else:
        put("CFI_CLANG", False, "no __cfi_ symbols and no .kcfi_traps")

    if facts.has("fineibt_preamble_start"):
        put("FINEIBT", True, "fineibt_preamble_start is defined")
    else:
        put("FINEIBT", False, "no fineibt_preamble_start")

    if facts.module:
        # A module carries none of these: they are properties of the kernel it loads into.
        for option in ("KPROBES_ON_FTRACE", "OPTPROBES", "KPROBE_EVENTS_ON_NOTRACE", "PARAVIRT", "CPU_SRSO",
                       "MITIGATION_ITS"):
            put(option, None, "a module does not show it: ask its vmlinux")
        return KernelConfig(version, out, embedded)

    # Absence means "off" only in an image that holds the kprobes core at all.
    has_kprobes = facts.has("register_kprobe")
    for option, marker, source in (("KPROBES_ON_FTRACE", "kprobe_ftrace_handler", "kprobes/ftrace.c"),
                                   ("OPTPROBES", "optprobe_template_entry", "kprobes/opt.c")):
        if facts.has(marker):
            put(option, True, f"{marker} is defined (arch/x86/kernel/{source})")
        elif has_kprobes:
            put(option, False, f"register_kprobe is there, {marker} is not")
        else:
            put(option, None, "no kprobes code in this image")

    # KPROBE_EVENTS_ON_NOTRACE=n compiles within_notrace_func() and its pr_warn string into
    # kernel/trace/trace_kprobe.c; =y compiles neither.
    if facts.has("within_notrace_func") or facts.has("__within_notrace_func"):
        put("KPROBE_EVENTS_ON_NOTRACE", False, "within_notrace_func is compiled in (trace_kprobe.c #ifndef)")
    else:
        warn = facts.rodata_has(b"Could not probe notrace function")
        if warn:
            put("KPROBE_EVENTS_ON_NOTRACE", False, "the \"Could not probe notrace function\" warning is in .rodata")
        elif warn is False and facts.has("trace_kprobe_create"):
            put("KPROBE_EVENTS_ON_NOTRACE", True, "kprobe events are built without the notrace test")
        else:
            put("KPROBE_EVENTS_ON_NOTRACE", None, "no kprobe events to look at")

    # options that exist exactly when the code they compile in leaves a symbol behind
    for option, markers in (("PARAVIRT", ("pv_ops",)), ("CPU_SRSO", ("srso_return_thunk", "srso_alias_return_thunk")),
                            ("MITIGATION_ITS", ("its_return_thunk",))):
        present = next((m for m in markers if facts.has(m)), None)
        put(option, present is not None, f"{present} is defined" if present else f"no {markers[0]}")

    return KernelConfig(version, out, embedded)


def table_layout_version(image: KernelImage) -> KernelVersion | None:
    """The version whose special-section layouts `image` has: a module's own vermagic, else
    its vmlinux's banner."""
    found = detect_version(image)
    if found is None and image.vmlinux is not None:
        found = detect_version(image.vmlinux)
    return found


