"""Tests of the QEMU ground-truth harness (probelint.vmtest).

The pure parts run everywhere in well under a second.  ``test_real_kernel`` boots
Debian's 6.1 cloud kernel under QEMU (markers ``kernel`` and ``vm``) and is skipped
when QEMU or the packages cannot be had.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from probelint.vmtest import HarnessUnavailable, errno_name, parse_list_line, parse_spec, run_probes
from probelint.vmtest import runner as vmrunner
from probelint.vmtest.download import KernelBundle, kernel_abi
from probelint.vmtest.initramfs import CpioEntry, GuestProbe, build_initramfs, read_newc, write_newc
from probelint.vmtest.sampler import read_probes
from probelint.vmtest.vm import BootResult

# ------------------------------------------------------------------ kprobes/list parsing


def test_parse_list_line_vmlinux_ftrace() -> None:
    e = parse_list_line("ffffffff8134cc50  k  vfs_read+0x0    [FTRACE]")
    assert e is not None
    assert (e.address, e.kind, e.symbol, e.offset, e.module) == (0xFFFFFFFF8134CC50, "k", "vfs_read", 0, None)
    assert e.flags == {"FTRACE"}


def test_parse_list_line_module_and_flags() -> None:
    e = parse_list_line("ffffffffc029db06  k  xfs_fs_statfs+0x16  xfs [OPTIMIZED]")
    assert e is not None and e.module == "xfs" and e.offset == 0x16 and e.flags == {"OPTIMIZED"}
    e = parse_list_line("ffffffffc02810b0  r  xfs_file_read_iter+0x0  xfs [DISABLED][FTRACE]")
    assert e is not None and e.kind == "r" and e.flags == {"DISABLED", "FTRACE"}
    e = parse_list_line("ffffffff8134cc7b  k  vfs_read+0x2b    ")
    assert e is not None and e.flags == frozenset() and e.symbol == "vfs_read"
    e = parse_list_line("ffffffff8134cc7b  k  NF_HOOK.constprop.0.isra.0+0x4    [GONE]")
    assert e is not None and e.symbol == "NF_HOOK.constprop.0.isra.0" and e.flags == {"GONE"}


def test_parse_list_line_rejects_noise() -> None:
    assert parse_list_line("") is None
    assert parse_list_line("cat: can't open '/sys/kernel/debug/kprobes/list'") is None


# ------------------------------------------------------------------ errno mapping


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("sh: write error: Invalid or incomplete multibyte or wide character", "EILSEQ"),
        ("sh: write error: Invalid argument", "EINVAL"),
        ("sh: write error: Cannot assign requested address", "EADDRNOTAVAIL"),
        ("sh: write error: No such file or directory", "ENOENT"),
        ("sh: write error: Operation not supported", "EOPNOTSUPP"),
        ("sh: write error: No space left on device", "ENOSPC"),
        ("sh: write error: Device or resource busy", "EBUSY"),
        ("sh: write error: Argument list too long", "E2BIG"),
        ("sh: write error: Unknown error 524", "ENOTSUPP"),
        ("sh: write error: something else", None),
    ],
)
def test_errno_name(text: str, name: str | None) -> None:
    assert errno_name(text) == name


# ------------------------------------------------------------------ spec parsing


def test_parse_spec() -> None:
    t = parse_spec("xfs:xfs_iread+4")
    assert (t.kind, t.module, t.symbol, t.offset, t.is_return) == ("p", "xfs", "xfs_iread", 4, False)
    t = parse_spec("vfs_read+0x1c")
    assert (t.module, t.symbol, t.offset) == (None, "vfs_read", 0x1C)
    t = parse_spec("vfs_read%return")
    assert t.is_return and t.symbol == "vfs_read" and t.body == "vfs_read%return"
    t = parse_spec("r:vfs_write")
    assert t.kind == "r" and t.is_return and t.body == "vfs_write"
    t = parse_spec("r16:vfs_write $retval")
    assert t.kind == "r16" and t.body == "vfs_write $retval" and t.symbol == "vfs_write"
    t = parse_spec("0xffffffff8134cc50")
    assert t.address == 0xFFFFFFFF8134CC50 and t.symbol is None
    with pytest.raises(ValueError):
        parse_spec("   ")


def test_kernel_abi() -> None:
    assert kernel_abi("linux-image-6.1.0-56-cloud-amd64") == "6.1.0-56-cloud-amd64"
    assert kernel_abi("linux-image-6.1.0-56-cloud-amd64-unsigned") == "6.1.0-56-cloud-amd64"


def test_read_probes_phases(tmp_path) -> None:
    probes = tmp_path / "p.txt"
    probes.write_text("# c\nvfs_read  # entry [vmlinux:0x1] a note\n\nvfs_read+0x5\n---\nvfs_read+0x7\n")
    samples, phases = read_probes([str(probes)])
    assert [s.spec for s in samples] == ["vfs_read", "vfs_read+0x5", "vfs_read+0x7"]
    assert (samples[0].category, samples[0].function, samples[0].note) == ("entry", "vmlinux:0x1", "a note")
    assert phases == [[0, 1], [2]]
    probes.write_text("a\nb\n")
    assert read_probes([str(probes)])[1] is None


def test_read_probes_registers_the_canonical_target(tmp_path) -> None:
    """Every syntax the linter reads becomes the kprobe_events target the kernel is asked about
    (written as they were, the first three were refused or misplaced by the guest)."""
    probes = tmp_path / "p.txt"
    probes.write_text("p:grp/ev kfree+0x3 ptr=%di\nr:ev vfs_read\nkprobe:ext4_file_write_iter\nr:vfs_read+0x5\n"
                      "xfs:xfs_file_read_iter+011\n")
    script = tmp_path / "t.bt"
    script.write_text("kretprobe:vfs_write { @n = count(); }\nkprobe:xfs:xfs_file_read_iter+5 {}\n")
    skipped = []
    samples, _ = read_probes([str(probes), str(script)], skipped=skipped.append)
    assert [s.spec for s in samples] == ["kfree+0x3", "vfs_read%return", "ext4_file_write_iter", "r:vfs_read+0x5",
                                         "xfs:xfs_file_read_iter+0x9", "vfs_write%return",
                                         "xfs:xfs_file_read_iter+0x5"]
    assert not skipped


# ------------------------------------------------------------------ cpio writer


def _entries() -> list[CpioEntry]:
    return [
        CpioEntry("bin", 0o040755),
        CpioEntry("bin/hello", 0o100755, b"#!/bin/sh\necho hi\n"),
        CpioEntry("bin/sh", 0o120777, b"busybox"),
        CpioEntry("dev/console", 0o020600, rdev=(5, 1)),
        CpioEntry("odd", 0o100644, b"x" * 5),
    ]


def test_newc_roundtrip() -> None:
    blob = write_newc(_entries())
    assert blob.startswith(b"070701") and len(blob) % 4 == 0
    back = read_newc(blob)
    assert [(e.name, e.mode, e.data, e.rdev) for e in back] == [(e.name, e.mode, e.data, e.rdev) for e in _entries()]


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
def test_newc_accepted_by_cpio() -> None:
    proc = subprocess.run(["cpio", "-t", "-v"], input=write_newc(_entries()), capture_output=True, check=True)
    listing = proc.stdout.decode()
    assert [line.split()[-1] for line in listing.splitlines()][:3] == ["bin", "bin/hello", "busybox"]
    assert "bin/sh -> busybox" in listing and "dev/console" in listing


def test_build_initramfs(tmp_path: Path) -> None:
    bb = tmp_path / "busybox"
    bb.write_bytes(b"\x7fELF fake")
    ko = tmp_path / "m.ko"
    ko.write_bytes(b"module")
    probes = [GuestProbe(0, 0, "p", "vfs_read+0x1"), GuestProbe(1, 1, "r", "vfs_write")]
    blob = build_initramfs(bb, probes, [ko], ["vfs_read", "vfs_write"], n_phases=2)
    files = {e.name: e for e in read_newc(gzip.decompress(blob))}
    assert files["bin/busybox"].data == b"\x7fELF fake"
    assert files["probes.txt"].data == b"0 0 p vfs_read+0x1\n1 1 r vfs_write\n"
    assert files["modules.txt"].data == b"m.ko\n" and files["lib/modules/m.ko"].data == b"module"
    init = files["init"].data.decode()
    assert init.startswith("#!/bin/sh") and "kprobe_events" in init and "-lt 2 ]" in init
    with pytest.raises(ValueError):
        build_initramfs(bb, [GuestProbe(0, 0, "p", "a\nb")])


# ------------------------------------------------------------------ report -> verdicts

_REPORT = """\
T 0 boot 2.1
U 6.1.0-56-cloud-amd64
V retbleed Not affected
T 0 registering 2.3
R 0 OK
R 1 ERR sh: write error: Invalid or incomplete multibyte or wide character
E 1 [    3.3] trace_kprobe: error: Probe point is not an instruction boundary
E 1   Command: p:pl/p1 vfs_read+0x1
R 2 OK
R 3 OK
R 4 OK
R 5 ERR sh: write error: Cannot assign requested address
D 5 [    4.07] trace_kprobe: some dmesg line
S 0 6 2
L 0 ffffffff8134cc50  k  vfs_read+0x0    [FTRACE]
L 0 ffffffff8134cc50  r  vfs_read+0x0    [FTRACE]
L 0 ffffffff8134cc63  k  vfs_read+0x13    [OPTIMIZED]
L 0 ffffffff8134d7c0  k  ksys_read+0x0    [FTRACE]
K ffffffff8134cc50 T vfs_read
K ffffffff8134d7c0 T ksys_read
DONE
"""


def test_report_to_verdicts() -> None:
    specs = ["vfs_read", "vfs_read+0x1", "vfs_read+0x13", "vfs_read%return", "vfs_read+0xb70", "__pte"]
    targets = [parse_spec(s) for s in specs]
    info = vmrunner.BootInfo(list(range(6)), 1.0, True, False)
    rep = vmrunner.parse_report(_REPORT, info)
    out = vmrunner._verdicts(specs, targets, [0] * 6, list(range(6)), rep)
    v = [out[i] for i in range(6)]
    assert v[0].registered and v[0].ftrace and not v[0].optimized and v[0].address == 0xFFFFFFFF8134CC50
    assert v[0].list_line.split()[1] == "k"
    assert not v[1].registered and v[1].errno == "EILSEQ" and "not an instruction boundary" in v[1].message
    assert v[2].optimized and v[2].flags == "OPTIMIZED"
    assert v[3].list_line.split()[1] == "r"  # the kretprobe line, not the kprobe at the same address
    assert v[4].address == 0xFFFFFFFF8134D7C0 and v[4].ftrace  # re-based into ksys_read via kallsyms
    assert v[5].errno == "EADDRNOTAVAIL" and v[5].message.endswith(" | trace_kprobe: some dmesg line")
    assert info.settle == [(0, 6, 2)] and info.vulnerabilities == {"retbleed": "Not affected"}


_PENDING_REPORT = """\
T 0 registering 2.3
R 0 OK
R 1 OK
R 2 OK
T 0 enabled 2.4
I aesni-intel.ko ERR insmod: can't insert '/lib/modules/aesni-intel.ko': No such device
I xfs.ko OK
Y xfs.ko [    5.52] trace_kprobe: Could not probe notrace function xfs:exit_xfs_fs
Y xfs.ko [    5.52] trace_kprobe: Failed to re-register probe p1 on xfs: -22
Y xfs.ko [    5.60] SGI XFS with ACLs, security attributes, realtime, quota, no debug enabled
L 0 ffffffffc0a00010  k  xfs_fs_statfs+0x10  xfs [OPTIMIZED]
K ffffffffc0a00000 t xfs_fs_statfs [xfs]
DONE
"""


def test_pending_probes_are_graded_by_the_module_load() -> None:
    """Defined before insmod: a probe the module's arrival refuses is told in dmesg only
    (trace_kprobe_module_callback); one on a module that never loaded stays pending."""
    specs = ["xfs:xfs_fs_statfs+0x10", "xfs:exit_xfs_fs", "aesni_intel:aesni_set_key+0x4"]
    info = vmrunner.BootInfo([0, 1, 2], 1.0, True, False)
    rep = vmrunner.parse_report(_PENDING_REPORT, info)
    v = vmrunner._verdicts(specs, [parse_spec(s) for s in specs], [0, 0, 0], [0, 1, 2], rep)
    assert v[0].registered and v[0].optimized and not v[0].pending
    assert not v[1].registered and v[1].errno == "EINVAL" and "notrace function xfs:exit_xfs_fs" in v[1].message
    assert v[2].registered and v[2].pending and not v[2].listed
    assert vmrunner.loaded_modules(info) == {"xfs"} and len(info.module_log["xfs.ko"]) == 3


def test_pending_initramfs_loads_the_modules_after_the_probes(tmp_path: Path) -> None:
    bb = tmp_path / "busybox"
    bb.write_bytes(b"")
    for pending in (False, True):
        blob = build_initramfs(bb, [GuestProbe(0, 0, "p", "xfs:xfs_fs_statfs")], [], pending=pending)
        init = {e.name: e for e in read_newc(gzip.decompress(blob))}["init"].data.decode()
        flag = "1" if pending else "0"  # the guest loads before defining unless pending, after otherwise
        assert f"[ {flag} = 1 ] || load_modules" in init and f"[ {flag} = 1 ]; then load_modules" in init


def test_crash_is_bisected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A probe that kills the guest is isolated; the others still get their verdicts."""
    bundle = KernelBundle("x", tmp_path / "bzImage")
    monkeypatch.setattr(vmrunner, "ensure_kernel", lambda *a, **k: bundle)
    monkeypatch.setattr(vmrunner, "ensure_busybox", lambda *a, **k: tmp_path / "bb")
    (tmp_path / "bb").write_bytes(b"")
    boots: list[int] = []

    def fake_boot(_bz: Path, initrd: bytes, **_kw: object) -> BootResult:
        files = {e.name: e.data for e in read_newc(gzip.decompress(initrd))}
        lines = [ln.split(" ", 3) for ln in files["probes.txt"].decode().splitlines()]
        boots.append(len(lines))
        out = ["T 0 boot 1", "T 0 registering 1"]
        for _ph, idx, _k, body in lines:
            if body == "boom":
                return BootResult("\n".join(out), "Oops: boom\nKernel panic", 0, False, 1.0, [])
            out.append(f"R {idx} OK")
        out.append("DONE")
        return BootResult("\n".join(out), "", 0, False, 1.0, [])

    monkeypatch.setattr(vmrunner, "boot", fake_boot)
    specs = ["a", "b", "boom", "c", "d"]
    v = run_probes(specs)
    assert [x.errno for x in v] == [None, None, "GUEST_CRASH", None, None]
    assert "Kernel panic" in v[2].message
    assert boots[0] == 5 and len(boots) <= 6


# ------------------------------------------------------------------ the real kernel


@pytest.mark.kernel
@pytest.mark.vm
def test_real_kernel() -> None:
    """Boot Debian's linux-image-6.1.0-56-cloud-amd64 under QEMU (qemu64) and check known verdicts."""
    specs = [
        "vfs_read",  # fentry site -> ftrace-based
        "vfs_read+0x1",  # inside the fentry call
        "vfs_read+0x13",  # mov %gs:0x28,%rax: jump-optimizable on qemu64
        "vfs_read+0xc2",  # mid-instruction
        "vfs_read+0xed",  # inside jmp __x86_return_thunk, int3-patched at boot on qemu64
        "vfs_read%return",
        "do_int3",  # NOKPROBE_SYMBOL
        "asm_exc_int3",  # entry text
        "probelint_no_such_symbol",
        "__pte",  # two static functions of that name
    ]
    try:
        v = run_probes(specs, kernel_package="linux-image-6.1.0-56-cloud-amd64", cpu="qemu64")
    except HarnessUnavailable as exc:
        pytest.skip(f"kernel VM harness unavailable: {exc}")
    by = {x.spec: x for x in v}
    assert by["vfs_read"].registered and by["vfs_read"].ftrace
    assert by["vfs_read"].address == 0xFFFFFFFF8134CC50  # nokaslr: ELF address
    assert by["vfs_read+0x1"].errno == "EILSEQ"
    assert by["vfs_read+0x13"].registered and by["vfs_read+0x13"].optimized
    assert by["vfs_read+0xc2"].errno == "EILSEQ"
    assert by["vfs_read+0xed"].errno == "EINVAL"
    assert by["vfs_read%return"].registered and by["vfs_read%return"].ftrace
    assert by["do_int3"].errno == "EINVAL"
    assert by["asm_exc_int3"].errno == "EINVAL"
    assert by["probelint_no_such_symbol"].errno == "ENOENT"
    assert by["__pte"].errno == "EADDRNOTAVAIL"


@pytest.mark.kernel
@pytest.mark.vm
def test_live_inside_the_guest() -> None:
    """`probelint --live` run in the booted 6.1 guest on the host's userspace (virtiofs, chroot)
    after three probes were registered and optimized, graded against the same guest's list."""
    from probelint.vmtest.compare import debug_images
    from probelint.vmtest.livecheck import run_live_check
    from probelint.vmtest.sampler import read_probes

    package = "linux-image-6.1.0-56-cloud-amd64"
    try:
        image = debug_images(package)[0]
        samples, phases = read_probes([str(Path(__file__).parent / "data" / "live_check_probes.txt")])
        assert phases is not None and len(phases) == 2
        before, linted = [samples[k] for k in phases[0]], [samples[k] for k in phases[1]]
        result = run_live_check(before, linted, image, kernel_package=package)
    except HarnessUnavailable as exc:
        pytest.skip(f"kernel VM harness unavailable: {exc}")
    assert result.returncode == 1  # errors reported (KP104, KP102, ...), not a crash
    assert [c.sample.spec for c in result.comparisons if c.disagrees()] == []
    by = {c.sample.spec: c for c in result.comparisons}
    # inside the jump window of the optimized vfs_write+0x5 registered before: the kernel
    # unoptimizes it and optimizes the new one, and probelint says so naming the listed probe
    new = by["vfs_write+0x7"]
    assert new.kernel.optimized and new.predicted.optimized
    assert any(f["rule"] == "KP302" and "kprobes/list" in f["message"] for f in new.predicted.findings)
    assert not by["vfs_write+0x5"].kernel.optimized and "KP301" in result.findings["vfs_write+0x5"]
    assert "KP409" in result.findings["vfs_read+0x13"]  # registered before: aggregated
    assert by["__pte"].kernel.errno == by["__pte"].predicted.errno == "EADDRNOTAVAIL"
    # once in the vmlinux, once in the loaded virtio module: kprobe_events counts both
    assert by["vendor_show"].kernel.errno == by["vendor_show"].predicted.errno == "EADDRNOTAVAIL"


@pytest.mark.kernel
@pytest.mark.vm
def test_register_kprobe_path_on_the_booted_kernel() -> None:
    """register_kprobe() from kmod/plkprobe.c (built against the Debian headers) in the 6.1 guest:
    no front end, so a non-unique name takes its first symbol and a notrace function registers;
    every verdict graded against probelint's on that path."""
    import probelint
    from probelint.vmtest.compare import debug_images
    from probelint.vmtest.kprobe_module import grade_register_kprobe
    from probelint.vmtest.sampler import Sample

    points = ["vfs_read", "vfs_read+0x13", "vfs_read+0x1", "vfs_read+0xed", "do_int3", "__pte", "vendor_show",
              "probelint_no_such_symbol", "memchr_inv", "pci_iomap_wc+0x38", "serial8250_tx_dma+0x8"]
    try:
        kernel = probelint.load_kernel(debug_images("linux-image-6.1.0-56-cloud-amd64"))
        comps, _ = grade_register_kprobe(kernel, [Sample(p, "-", p) for p in points])
    except HarnessUnavailable as exc:
        pytest.skip(f"kernel VM harness or Debian headers unavailable: {exc}")
    assert [c.sample.spec for c in comps if c.disagrees()] == []
    by = {c.sample.spec: c for c in comps}
    assert by["__pte"].kernel.registered  # kprobe_events: EADDRNOTAVAIL
    assert by["vfs_read+0x13"].kernel.optimized and by["vfs_read+0x1"].kernel.errno == "EILSEQ"
    assert by["do_int3"].kernel.errno == "EINVAL" and by["probelint_no_such_symbol"].kernel.errno == "ENOENT"


@pytest.mark.kernel
def test_share_modules_are_loaded_only_where_the_kernel_has_them_as_modules():
    """The --live-check share needs virtio_pci and virtiofs: modules of 6.1's cloud flavour (fuse
    and the virtio core with them, as dependencies), built into 7.2's; a module asked for by name must exist, and the
    error names the package it was looked for in (7.x: linux-modules-ABI)."""
    from probelint.vmtest.download import ensure_kernel
    from probelint.vmtest.livecheck import MODULES

    def names(bundle: KernelBundle) -> list[str]:
        return [p.name.split(".")[0] for p in bundle.modules]

    loaded = names(ensure_kernel("linux-image-6.1.0-56-cloud-amd64", optional=MODULES))
    assert {"virtio_pci", "fuse", "virtiofs"} <= set(loaded) and loaded[-1] == "virtiofs"  # dependencies first
    assert "xfs" in names(ensure_kernel("linux-image-7.2.13+deb14-cloud-amd64", modules=["xfs"], optional=MODULES))
    assert not {"virtio_pci", "virtiofs"} & set(names(ensure_kernel("linux-image-7.2.13+deb14-cloud-amd64",
                                                                    optional=MODULES)))
    with pytest.raises(HarnessUnavailable, match=r"'no_such_module' not found in linux-modules-7\.2"):
        ensure_kernel("linux-image-7.2.13+deb14-cloud-amd64", modules=["no_such_module"])


def test_dump_kallsyms_without_live_check_is_a_usage_error(tmp_path, capsys) -> None:
    """The guest's kallsyms is dumped only in a --live-check run: asked for elsewhere it was ignored."""
    from probelint.vmtest.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--sample", "10", "--dump-kallsyms", str(tmp_path)])
    assert exit_info.value.code == 2 and "--dump-kallsyms needs --live-check" in capsys.readouterr().err


def test_an_early_guest_death_is_booted_again_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A guest that dies before the probes are written is booted again once (a TCG flake); a
    second early death is an error, whose console tail leaves out QEMU's TCG feature warnings."""
    bundle = KernelBundle("x", tmp_path / "bzImage")
    monkeypatch.setattr(vmrunner, "ensure_kernel", lambda *a, **k: bundle)
    monkeypatch.setattr(vmrunner, "ensure_busybox", lambda *a, **k: tmp_path / "bb")
    (tmp_path / "bb").write_bytes(b"")
    warning = "qemu-system-x86_64: warning: TCG doesn't support requested feature: CPUID.0DH:EAX.xsaves [bit 3]"
    deaths = [1]

    def fake_boot(_bz: Path, initrd: bytes, **_kw: object) -> BootResult:
        files = {e.name: e.data for e in read_newc(gzip.decompress(initrd))}
        lines = [ln.split(" ", 3) for ln in files["probes.txt"].decode().splitlines()]
        if deaths[0]:
            deaths[0] -= 1
            return BootResult("T 0 boot 1", "\n".join(["Kernel panic: early", *[warning] * 30]), 0, False, 1.0, [])
        out = ["T 0 boot 1", "T 0 registering 1", *(f"R {idx} OK" for _ph, idx, _k, _b in lines), "DONE"]
        return BootResult("\n".join(out), "", 0, False, 1.0, [])

    monkeypatch.setattr(vmrunner, "boot", fake_boot)
    assert [v.registered for v in run_probes(["a", "b"])] == [True, True]
    deaths[0] = 2
    with pytest.raises(vmrunner.GuestBootError, match="Kernel panic: early") as raised:
        run_probes(["a", "b"])
    assert "TCG doesn't support" not in str(raised.value)
