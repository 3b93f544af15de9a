#!/bin/sh
# Rebuild demo.elf from demo.S and demo_b.S: a miniature x86-64 vmlinux for probelint's demo.
set -eu
cd "$(dirname "$0")"
gcc -c -x assembler-with-cpp -o demo.o demo.S
gcc -c -x assembler-with-cpp -o demo_b.o demo_b.S
ld -nostdlib -static --build-id=sha1 --no-warn-rwx-segments -T kernel.lds -o demo.elf demo.o demo_b.o
rm -f demo.o demo_b.o
