#!/usr/bin/env python3
# demostat: count demo I/O on any kernel, in the style of bcc's tools that attach to
# whichever function this kernel has.
from bcc import BPF

b = BPF(src_file="demostat.c")
if BPF.get_kprobe_functions(b"__demo_read_start"):
    b.attach_kprobe(event="__demo_read_start", fn_name="trace_start")
else:
    b.attach_kprobe(event="demo_read", fn_name="trace_start")
if BPF.get_kprobe_functions(b"demo_write"):
    b.attach_kretprobe(event="demo_write", fn_name="trace_done")
    b.attach_kprobe(event="demo_write", fn_name="trace_start")
elif b.ksymname("demo_old_write") != -1:
    b.attach_kprobe(event="demo_old_write", fn_name="trace_start")
if BPF.get_kprobe_functions(b"demo_flush"):
    b.attach_kretprobe(event="demo_flush", fn_name="trace_done")
try:
    b.attach_kprobe(event="__demo_vfs_read", fn_name="trace_start")
except Exception:
    print("no __demo_vfs_read, trying demo_read instead")
    b.attach_kretprobe(event="demo_read", fn_name="trace_done")
b.attach_kprobe(event="demo_gone", fn_name="trace_start")  # unguarded: the tool fails here
