// SPDX-License-Identifier: GPL-2.0
// demolat: demo read latency, in the style of libbpf-tools; demolat.c attaches the kprobes.
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("kprobe/dummy_read_start")
int BPF_KPROBE(read_start, struct file *file)
{
	return 0;
}

SEC("kretprobe/dummy_read_done")
int BPF_KRETPROBE(read_done, long ret)
{
	return 0;
}

SEC("kprobe")
int BPF_KPROBE(write_start)
{
	return 0;
}

SEC("kprobe.multi")
int all_done(struct pt_regs *ctx)
{
	return 0;
}

SEC("kprobe/dummy_op")
int BPF_KPROBE(op_start)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
