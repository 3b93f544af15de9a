#!/usr/bin/env python3
# demosnoop: trace demo reads and writes, in the style of bcc's tools.
from bcc import BPF

bpf_text = """
#include <uapi/linux/ptrace.h>

int kprobe__demo_write(struct pt_regs *ctx) { return 0; }
int kretprobe__sys_read(struct pt_regs *ctx) { return 0; }
int trace_entry(struct pt_regs *ctx) { return 0; }
"""

READ_FN = "demo_read"


def attach(b, fn):
    b.attach_kprobe(event=fn, fn_name="trace_entry")


b = BPF(text=bpf_text)
b.attach_kprobe(event="demo_notrace", fn_name="trace_entry")
b.attach_kretprobe(event=READ_FN, fn_name="trace_entry")
b.attach_kprobe(event=b.get_syscall_fnname("openat"), fn_name="trace_entry")
b.attach_kprobe(event_re=r"^demo_.*e$", fn_name="trace_entry")
b.attach_kprobe(event="demo_read", event_off=7, fn_name="trace_entry")
attach(b, "demo_write")
# kprobe__not_a_function in a comment is no program
