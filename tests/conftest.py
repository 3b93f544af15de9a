"""Shared fixtures: kernels built from assembly, and the real Debian kernel (cached download)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import probelint
from probelint.checks import ProbeResult
from probelint.image.kernel import Kernel

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"
# The Debian kernel the integration tests use; Debian replaces ABI numbers over time.
KERNEL_PACKAGE = os.environ.get("PROBELINT_KERNEL_PACKAGE", "linux-image-6.1.0-56-cloud-amd64")


FENTRY_UNIT = "    .text\n    .p2align 4\nFUNC __fentry__\n    ret\n"


@pytest.fixture(scope="session")
def build_kernel(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Assemble `source` (with examples/demo/kernel.inc macros) into a miniature vmlinux."""
    if shutil.which("gcc") is None or shutil.which("ld") is None:
        pytest.skip("gcc and ld are needed to build kernel fixtures")
    out_dir = tmp_path_factory.mktemp("kernels")
    counter = iter(range(1_000_000))

    def build(source: str | list[str], *, module: bool = False) -> Path:
        """One object per source string ("compilation unit"), linked like a vmlinux."""
        n = next(counter)
        objs = []
        units = [source] if isinstance(source, str) else list(source)
        if not module and not any("FUNC __fentry__" in u for u in units):
            units.append(FENTRY_UNIT)  # last, so the test's own code starts at _stext
        for i, text in enumerate(units):
            src = out_dir / f"k{n}_{i}.S"
            src.write_text('#include "kernel.inc"\n' + text)
            obj = src.with_suffix(".o")
            subprocess.run(["gcc", "-c", "-x", "assembler-with-cpp", f"-I{DEMO}", "-o", obj, src], check=True)
            objs.append(obj)
        if module:
            if len(objs) == 1:
                return objs[0]  # a .ko is an ET_REL object, exactly what the assembler wrote
            ko = out_dir / f"k{n}.ko"  # several units: joined as kbuild links a module's objects
            subprocess.run(["ld", "-r", "-o", ko, *objs], check=True)
            return ko
        elf = out_dir / f"k{n}.elf"
        subprocess.run(["ld", "-nostdlib", "-static", "--build-id=sha1", "--no-warn-rwx-segments",
                        "-T", DEMO / "kernel.lds", "-o", elf, *objs], check=True)
        return elf

    return build


@pytest.fixture(scope="session")
def lint(build_kernel: Callable[..., Path]) -> Callable[..., list[ProbeResult]]:
    """Build a fixture kernel from assembly and check probes against it."""

    def run(source: str | list[str], *probes: str, module: bool = False) -> list[ProbeResult]:
        return list(probelint.check([build_kernel(source, module=module)], list(probes), hints="never"))

    return run


def rules_fired(result: ProbeResult) -> list[str]:
    return [f.rule for f in result.findings]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the Debian kernel without the `kernel` marker would download it even under
    `-m "not kernel"`: refuse to run such a suite."""
    unmarked = [item.nodeid for item in items
                if "debian" in getattr(item, "fixturenames", ()) and item.get_closest_marker("kernel") is None]
    if unmarked:
        raise pytest.UsageError("tests using the Debian kernel without @pytest.mark.kernel: " + ", ".join(unmarked))


@dataclass(frozen=True)
class DebianKernel:
    vmlinux: Path
    system_map: Path
    xfs: Path


@pytest.fixture(scope="session")
def debian() -> DebianKernel:
    """The unstripped Debian vmlinux, its System.map and xfs.ko (downloaded once into the cache)."""
    from probelint.vmtest.download import HarnessUnavailable, ensure_deb, extract_members, kernel_abi

    abi = kernel_abi(KERNEL_PACKAGE)
    try:
        deb = ensure_deb(f"linux-image-{abi}-dbg")
        members = [f"./usr/lib/debug/boot/vmlinux-{abi}", f"./usr/lib/debug/boot/System.map-{abi}",
                   f"./usr/lib/debug/lib/modules/{abi}/kernel/fs/xfs/xfs.ko"]
        root = extract_members(deb, members)
    except HarnessUnavailable as exc:
        pytest.skip(f"Debian kernel {KERNEL_PACKAGE} not available: {exc}")
    return DebianKernel(*(root / m for m in members))


@pytest.fixture(scope="session")
def debian_kernel(debian: DebianKernel) -> Kernel:
    return probelint.load_kernel([debian.vmlinux])
