// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// demolat: attach to whichever read function this kernel has (https://example.invalid/demolat)
#include <argp.h>
#include <bpf/libbpf.h>
#include "demolat.skel.h"
#include "trace_helpers.h"

static const char *op_funcs[] = { "demo_read", "demo_write" };

static int attach_kprobes(struct demolat_bpf *obj, int op)
{
	LIBBPF_OPTS(bpf_kprobe_opts, opts);
	LIBBPF_OPTS(bpf_kprobe_multi_opts, mopts);

	if (kprobe_exists("__demo_read_start"))
		obj->links.read_start = bpf_program__attach_kprobe(obj->progs.read_start, false, "__demo_read_start");
	else
		obj->links.read_start = bpf_program__attach_kprobe(obj->progs.read_start, false, "demo_read");
	obj->links.read_done = bpf_program__attach_kprobe(obj->progs.read_done, true,
							  "demo_read");
	/* "demo_notrace" in a comment is no target: bpf_program__attach_kprobe(obj->progs.x, 0, "a") */
	obj->links.write_start = bpf_program__attach_kprobe_opts(obj->progs.write_start, "demo_write", &opts);
	mopts.retprobe = true;
	obj->links.all_done = bpf_program__attach_kprobe_multi_opts(obj->progs.all_done, "demo_*", &mopts);
	obj->links.op_start = bpf_program__attach_kprobe(obj->progs.op_start, false, op_funcs[op]);
	return 0;
}

int main(int argc, char **argv)
{
	struct demolat_bpf *obj = demolat_bpf__open_and_load();

	return attach_kprobes(obj, argc > 1);
}
