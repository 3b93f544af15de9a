/*
 * probelint demo kernel: a few functions in the shapes that matter for kprobe placement.
 * Rebuild with ./build.sh (gcc + ld); the built demo.elf is committed beside this source.
 */
#include "kernel.inc"

    .text
FUNC __fentry__
    ret
    .p2align 4, 0xcc

/* A traceable function: fentry site, then a prologue of multi-byte instructions. */
FUNC demo_read
    FENTRY
    push %rbp
    mov %rsp, %rbp
    movabs $0x1122334455667788, %rax      /* 10 bytes */
    lea 0x10(%rdi), %rsi
    test %rsi, %rsi
    je 1f
    mov (%rsi), %eax
1:  pop %rbp
    ret
    .size demo_read, . - demo_read
    .p2align 4, 0x90                       /* nop padding: belongs to demo_read for kallsyms */

/* A file-local function; demo_b.S has another `show`, as two C files' statics would. */
LOCAL_FUNC show
    FENTRY
    xor %eax, %eax
    ret
    .p2align 4, 0x90
FUNC demo_write
    FENTRY
    push %rbx
    mov %rdi, %rbx
    call demo_read
    pop %rbx
    ret
    .p2align 4, 0x90

/* No fentry site: a notrace function. */
FUNC demo_notrace
    mov $2, %eax
    ret
    .p2align 4, 0x90

/* NOKPROBE_SYMBOL(demo_nmi_handler) */
FUNC demo_nmi_handler
    FENTRY
    push %rbp
    pop %rbp
    ret
    .p2align 4, 0x90
NOKPROBE demo_nmi_handler

    .section .init.text, "ax"
FUNC demo_init
    FENTRY
    xor %eax, %eax
    ret

    .data
    .globl demo_counter
    .type demo_counter, @object
demo_counter:
    .quad 0
    .size demo_counter, 8
