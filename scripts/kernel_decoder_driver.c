// SPDX-License-Identifier: GPL-2.0-only
/*
 * probelint: userspace driver around the Linux kernel's own x86 instruction decoder.
 *
 * This file is ours; the decoder it links against (tools/arch/x86/lib/insn.c, inat.c and the
 * inat-tables.c generated from x86-opcode-map.txt) is taken from the kernel source package at
 * build time by scripts/kernel_decoder.py and is never stored in this repository.
 *
 * Walk mode (default), binary on stdin and stdout, little-endian, records back to back:
 *
 *   in:  u64 address, u32 size, u32 nbytes, nbytes bytes of code
 *        (`size` is the kallsyms size of the symbol; `nbytes` >= size normally, the bytes past
 *        `size` being what really follows the symbol, up to MAX_INSN_SIZE of them)
 *   out: u32 count, i32 status, count bytes of instruction lengths
 *
 * Each record is walked the way arch/x86/kernel/kprobes/core.c can_probe() and opt.c
 * can_optimize() walk a function: from offset 0, insn_decode() on a buffer of MAX_INSN_SIZE bytes
 * (fewer only when the supplied bytes run out), advancing by insn.length while the offset is
 * below `size`. `status` is 0 when the walk reached `size`, otherwise insn_decode()'s negative
 * return value for the instruction at offset sum(lengths), where the walk stopped.
 *
 * `--dump-tables` prints the opcode attribute tables as the decoder sees them (through
 * inat_primary_table, inat_escape_tables, inat_group_tables and inat_avx_tables), one line per
 * table, so that they can be compared with the tables linked into a vmlinux.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <asm/insn.h>
#include <asm/inat.h>

extern const insn_attr_t inat_primary_table[INAT_OPCODE_TABLE_SIZE];
extern const insn_attr_t * const inat_escape_tables[INAT_ESC_MAX + 1][INAT_LSTPFX_MAX + 1];
extern const insn_attr_t * const inat_group_tables[INAT_GRP_MAX + 1][INAT_LSTPFX_MAX + 1];
extern const insn_attr_t * const inat_avx_tables[X86_VEX_M_MAX + 1][INAT_LSTPFX_MAX + 1];

static void dump_table(const char *name, int i, int j, const insn_attr_t *t, int n)
{
	int k;

	printf("%s %d %d", name, i, j);
	if (!t) {
		printf(" -\n");
		return;
	}
	for (k = 0; k < n; k++)
		printf(" %x", (unsigned int)t[k]);
	printf("\n");
}

static int dump_tables(void)
{
	int i, j;

	printf("dims %d %d %d %d %d %d\n", INAT_ESC_MAX + 1, INAT_GRP_MAX + 1, X86_VEX_M_MAX + 1,
	       INAT_LSTPFX_MAX + 1, INAT_OPCODE_TABLE_SIZE, INAT_GROUP_TABLE_SIZE);
	dump_table("inat_primary_table", 0, 0, inat_primary_table, INAT_OPCODE_TABLE_SIZE);
	for (i = 0; i <= INAT_ESC_MAX; i++)
		for (j = 0; j <= INAT_LSTPFX_MAX; j++)
			dump_table("inat_escape_tables", i, j, inat_escape_tables[i][j],
				   INAT_OPCODE_TABLE_SIZE);
	for (i = 0; i <= INAT_GRP_MAX; i++)
		for (j = 0; j <= INAT_LSTPFX_MAX; j++)
			dump_table("inat_group_tables", i, j, inat_group_tables[i][j],
				   INAT_GROUP_TABLE_SIZE);
	for (i = 0; i <= X86_VEX_M_MAX; i++)
		for (j = 0; j <= INAT_LSTPFX_MAX; j++)
			dump_table("inat_avx_tables", i, j, inat_avx_tables[i][j],
				   INAT_OPCODE_TABLE_SIZE);
	return fflush(stdout) ? 1 : 0;
}

static int read_full(void *p, size_t n)
{
	return fread(p, 1, n, stdin) == n;
}

static uint32_t get_u32(const unsigned char *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

int main(int argc, char **argv)
{
	unsigned char hdr[16], out[8];
	unsigned char *code = NULL, *lens = NULL;
	size_t cap = 0;

	if (argc > 1 && !strcmp(argv[1], "--dump-tables"))
		return dump_tables();
	if (argc > 1) {
		fprintf(stderr, "usage: %s [--dump-tables] < records\n", argv[0]);
		return 2;
	}

	while (read_full(hdr, 1)) {
		uint32_t size, nbytes, off = 0, count = 0;
		int status = 0;

		if (!read_full(hdr + 1, sizeof(hdr) - 1))
			goto truncated;
		size = get_u32(hdr + 8);
		nbytes = get_u32(hdr + 12);
		if (nbytes + 1 > cap) {
			cap = nbytes + 1;
			code = realloc(code, cap);
			lens = realloc(lens, cap);
			if (!code || !lens) {
				fprintf(stderr, "kernel_decoder: out of memory\n");
				return 1;
			}
		}
		if (!read_full(code, nbytes))
			goto truncated;

		while (off < size) {
			struct insn insn;
			uint32_t avail = off < nbytes ? nbytes - off : 0;
			int buf_len = avail < MAX_INSN_SIZE ? (int)avail : MAX_INSN_SIZE;
			int ret = insn_decode(&insn, code + off, buf_len, INSN_MODE_64);

			if (ret < 0) {
				status = ret;
				break;
			}
			lens[count++] = insn.length;
			off += insn.length;
		}
		put_u32(out, count);
		put_u32(out + 4, (uint32_t)status);
		if (fwrite(out, 1, sizeof(out), stdout) != sizeof(out) ||
		    fwrite(lens, 1, count, stdout) != count) {
			fprintf(stderr, "kernel_decoder: write error\n");
			return 1;
		}
	}
	free(code);
	free(lens);
	return fflush(stdout) ? 1 : 0;

truncated:
	fprintf(stderr, "kernel_decoder: truncated input record\n");
	return 1;
}
