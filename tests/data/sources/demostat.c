#include <uapi/linux/ptrace.h>

// kprobe__demo_comment(): not a program
int kprobe__demo_write(struct pt_regs *ctx) { return 0; }
int trace_start(struct pt_regs *ctx) { return 0; }
int trace_done(struct pt_regs *ctx) { return 0; }
