/* A second "compilation unit" of the demo kernel, with its own static `show`. */
#include "kernel.inc"

    .text
LOCAL_FUNC show
    FENTRY
    mov $1, %eax
    ret
    .p2align 4, 0x90
