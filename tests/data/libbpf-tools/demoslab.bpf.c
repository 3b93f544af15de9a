// SPDX-License-Identifier: GPL-2.0
// demoslab: programs the loader (demoslab.c) chooses between by switching autoload.
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("kprobe/__demo_alloc")
int BPF_KPROBE(demo_alloc_new)
{
	return 0;
}

SEC("kprobe/demo_write")
int BPF_KPROBE(demo_alloc_old)
{
	return 0;
}

SEC("kprobe/demo_fsync")
int BPF_KPROBE(fsync_kprobe)
{
	return 0;
}

SEC("fentry/demo_fsync")
int BPF_PROG(fsync_fentry)
{
	return 0;
}

SEC("kprobe/demo_flush")
int BPF_KPROBE(flush_entry)
{
	return 0;
}

SEC("?kprobe/demo_notrace")
int BPF_KPROBE(debug_entry)
{
	return 0;
}

SEC("kprobe/dummy_read")
int BPF_KPROBE(read_entry)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
