// SPDX-License-Identifier: GPL-2.0
/*
 * plkprobe: register_kprobe() on each point of the module parameter `points`
 * ("SYM+OFF,SYM,..."), as SystemTap and kernel modules do (no kprobe_events
 * front end), printing "plkprobe: <index> <return value> <address>" per point.
 * The probes stay registered until the module is removed, so that
 * /sys/kernel/debug/kprobes/list shows them ([OPTIMIZED], [FTRACE]).
 */
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

#define MAX_POINTS 512

static char *points;
module_param(points, charp, 0444);
MODULE_PARM_DESC(points, "comma-separated SYM[+OFF] points (a charp takes 1024 bytes)");
static int first;
module_param(first, int, 0444);
MODULE_PARM_DESC(first, "the index printed for the first point");

static struct kprobe *probes;
static int count;

static int pre(struct kprobe *p, struct pt_regs *regs)
{
	return 0;
}

static int __init plkprobe_init(void)
{
	char *rest = points, *tok, *plus;
	unsigned long off;

	probes = kcalloc(MAX_POINTS, sizeof(*probes), GFP_KERNEL);
	if (!probes)
		return -ENOMEM;
	while (rest && count < MAX_POINTS && (tok = strsep(&rest, ",")) != NULL) {
		struct kprobe *kp = &probes[count];
		int ret;

		off = 0;
		plus = strchr(tok, '+');
		if (plus) {
			*plus = '\0';
			if (kstrtoul(plus + 1, 0, &off))
				off = ~0UL;
		}
		kp->symbol_name = tok;
		kp->offset = off;
		kp->pre_handler = pre;
		ret = register_kprobe(kp);
		pr_info("plkprobe: %d %d %px\n", first + count, ret, ret ? NULL : kp->addr);
		if (ret)
			kp->symbol_name = NULL;
		count++;
	}
	return 0;
}

static void __exit plkprobe_exit(void)
{
	int i;

	for (i = 0; i < count; i++)
		if (probes[i].symbol_name)
			unregister_kprobe(&probes[i]);
	kfree(probes);
}

module_init(plkprobe_init);
module_exit(plkprobe_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("probelint vmtest: register_kprobe() on given points");
