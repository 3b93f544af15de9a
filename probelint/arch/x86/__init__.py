"""x86-64, where the kernel keeps it: the instruction decoder (`decode`, arch/x86/lib/insn.c and
objtool's arch/x86/decode.c), boot-time text patching (`patching`, arch/x86/kernel/alternative.c)
and the CPU models whose features that patching tests (`cpu`, arch/x86/kernel/cpu/)."""
