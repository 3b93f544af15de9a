// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// demoslab: count demo allocations on old and new kernels alike.
#include <bpf/libbpf.h>
#include "demoslab.skel.h"
#include "trace_helpers.h"

int main(int argc, char **argv)
{
	struct demoslab_bpf *obj = demoslab_bpf__open();

	if (kprobe_exists("__demo_alloc"))
		bpf_program__set_autoload(obj->progs.demo_alloc_old, false);
	else if (kprobe_exists("demo_write"))
		bpf_program__set_autoload(obj->progs.demo_alloc_new, false);
	else {
		fprintf(stderr, "no demo allocator (\"__demo_alloc\", \"demo_write\") found\n");
		return 1;
	}
	if (fentry_can_attach("demo_fsync", NULL)) {
		bpf_program__set_autoload(obj->progs.fsync_kprobe, false);
	} else {
		bpf_program__set_autoload(obj->progs.fsync_fentry, false);
	}
	bpf_program__set_autoload(obj->progs.flush_entry, false);
	bpf_program__set_attach_target(obj->progs.read_entry, 0, "demo_read");
	if (demoslab_bpf__load(obj) || demoslab_bpf__attach(obj))
		return 1;
	return 0;
}
