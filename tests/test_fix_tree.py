"""--unsafe-fixes and --diff on a mixed tree written in the style of real projects, against the demo kernel:
the exact lines each file loses and gains, and --diff printing what --fix then writes."""

import difflib
import re
import stat
import subprocess
import sys

from tests.conftest import DEMO, ROOT

PROBE_LIST = """\
# probes of the storage team (one per line)
demo_read                        # entry: ftrace-based
0xffffffff81000019               # demo_read+0x9, by address
kprobe:demo_write+010            # octal to the kernel
demo_read                        # again
p:storage/wr demo_write+0x5 %di  # kprobe_events syntax
"""

BPFTRACE = """\
#!/usr/bin/env bpftrace
/* vfscount: count demo VFS calls */
kprobe:demo_read,
kprobe:demo_read,
kprobe:demo_write+010, kprobe:demo_write, kprobe:demo_write
{
\t@calls[probe] = count();
}

kretprobe:demo_read { @returns = count(); }
"""

LIBBPF = """\
// SPDX-License-Identifier: GPL-2.0
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
\f
__u64 stats[2];

static __always_inline int inc(int key)
{
\t__atomic_add_fetch(&stats[key], 1, __ATOMIC_RELAXED);
\treturn 0;
}

SEC("kprobe/demo_read")
int BPF_KPROBE(kprobe_read)
{
\treturn inc(0);
}

SEC("kprobe/demo_write+010")
int BPF_KPROBE(kprobe_write)
{
\treturn inc(1);
}

SEC("kprobe/demo_read")
int BPF_KPROBE(kprobe_read_again)
{
\treturn inc(0);
}

char LICENSE[] SEC("license") = "GPL";
"""

SHELL = """\
#!/bin/sh
# set up the demo's kprobe events
T=/sys/kernel/tracing
echo 'p:demo/rd demo_read+0x5 %di' >> $T/kprobe_events
echo 'p:demo/addr 0xffffffff81000019' >> $T/kprobe_events
perf probe -a demo_write+010
perf probe -a 'wr=demo_write+0x5 %di'
""".replace("\n", "\r\n")

# file -> (lines removed, lines added), each with its line ending; 10 probe tokens changed
EXPECTED = {
    "probes.txt": (
        ["0xffffffff81000019               # demo_read+0x9, by address\n",
         "kprobe:demo_write+010            # octal to the kernel\n",
         "demo_read                        # again\n"],  # a duplicate within the file: a line holding only it
        ["demo_read+0x9               # demo_read+0x9, by address\n",
         "kprobe:demo_write+0x9            # octal to the kernel\n"]),  # octal to hex, then to a boundary
    "tools/current.bt": (
        ["kprobe:demo_read,\n",  # the second of two identical lines
         "kprobe:demo_write+010, kprobe:demo_write, kprobe:demo_write\n"],
        ["kprobe:demo_write+0x9, kprobe:demo_write\n"]),  # the handler, and kretprobe:demo_read, stay
    "libbpf/vfsstat.bpf.c": (  # the duplicate SEC("kprobe/demo_read") and its program stay
        ['SEC("kprobe/demo_write+010")\n'],
        ['SEC("kprobe/demo_write+0x9")\n']),
    "scripts/trace.sh": (
        ["echo 'p:demo/rd demo_read+0x5 %di' >> $T/kprobe_events\r\n",
         "echo 'p:demo/addr 0xffffffff81000019' >> $T/kprobe_events\r\n",
         "perf probe -a demo_write+010\r\n"],
        ["echo 'p:demo/rd demo_read+0x13 %di' >> $T/kprobe_events\r\n",  # out of demo_read+0x9's way
         "echo 'p:demo/addr demo_read+0x9' >> $T/kprobe_events\r\n",
         "perf probe -a demo_write+0x9\r\n"]),
}


def make_tree(root):
    (root / "tools").mkdir(parents=True)
    (root / "libbpf").mkdir()
    (root / "scripts").mkdir()
    (root / "probes.txt").write_text(PROBE_LIST)
    (root / "tools" / "vfscount.bt").write_text(BPFTRACE)
    (root / "tools" / "current.bt").symlink_to("vfscount.bt")  # read and fixed once, through the link
    (root / "libbpf" / "vfsstat.bpf.c").write_text(LIBBPF)
    (root / "scripts" / "trace.sh").write_bytes(SHELL.encode())
    (root / "scripts" / "trace.sh").chmod(0o755)


def run(*args):
    """stdout and stderr as printed (text=True would turn the diff's CRLF into LF)."""
    proc = subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), "--no-cache", *args],
                          capture_output=True, cwd=ROOT)
    return proc.stdout.decode(), proc.stderr.decode()


def snapshot(root):
    """Each file's text (through links), by the name probelint reads it under."""
    return {str(p.relative_to(root)): p.read_bytes().decode() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "vfscount.bt"}


def lines(text):
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)  # ended by "\n" only, as probelint counts lines


def test_fix_a_tree(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree)
    before = snapshot(tree)
    shown, _ = run("--unsafe-fixes", "--diff", str(tree))
    assert snapshot(tree) == before
    _, said = run("--unsafe-fixes", str(tree))
    assert said.endswith("probelint: applied 10 fixes\n"), said
    after = snapshot(tree)
    changes = {}
    for name in after:
        diff = [line for line in difflib.ndiff(lines(before[name]), lines(after[name])) if line[:2] in ("- ", "+ ")]
        if diff:
            changes[name] = ([d[2:] for d in diff if d[0] == "-"], [d[2:] for d in diff if d[0] == "+"])
    assert changes == EXPECTED
    assert (tree / "tools" / "current.bt").is_symlink()
    assert stat.S_IMODE((tree / "scripts" / "trace.sh").stat().st_mode) == 0o755
    assert not list(tree.rglob(".probelint-*"))

    # --diff printed exactly what --fix then wrote
    prefix = str(tree).lstrip("/")
    assert shown == "".join("".join(difflib.unified_diff(lines(before[name]), lines(after[name]),
                                                                f"a/{prefix}/{name}", f"b/{prefix}/{name}"))
                                   for name in sorted(EXPECTED))

    _, said = run("--unsafe-fixes", str(tree))
    assert said.endswith("probelint: applied 0 fixes\n") and snapshot(tree) == after
