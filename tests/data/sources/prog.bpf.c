SEC("kprobe/demo_read+0x6")
int BPF_KPROBE(r) { return 0; }
SEC("kretprobe/demo_write")
int BPF_KRETPROBE(w) { return 0; }
SEC("kprobe.multi/show*")
int m(void *ctx) { return 0; }
