"""Ground-truth harness: boot a real Debian kernel under QEMU and register kprobes in it.

Usage::

    from probelint.vmtest import run_probes
    for v in run_probes(["vfs_read", "vfs_read+0x1"], cpu="qemu64"):
        print(v.spec, v.registered, v.errno, v.optimized, v.ftrace)

or ``python -m probelint.vmtest probes.txt``.  Standard library only.
"""

from .download import (
    HarnessUnavailable,
    default_cache_dir,
    ensure_busybox,
    ensure_debug_vmlinux,
    ensure_kernel,
)
from .runner import (
    CRASH_ERRNO,
    DEFAULT_KERNEL_PACKAGE,
    BootInfo,
    GuestBootError,
    KernelVerdict,
    RunReport,
    errno_name,
    parse_list_line,
    parse_spec,
    run_probes,
    run_probes_report,
)

__all__ = [
    "CRASH_ERRNO",
    "DEFAULT_KERNEL_PACKAGE",
    "BootInfo",
    "GuestBootError",
    "HarnessUnavailable",
    "KernelVerdict",
    "RunReport",
    "default_cache_dir",
    "ensure_busybox",
    "ensure_debug_vmlinux",
    "ensure_kernel",
    "errno_name",
    "parse_list_line",
    "parse_spec",
    "run_probes",
    "run_probes_report",
]
