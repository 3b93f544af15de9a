#!/bin/sh
echo 'p:grp/ev demo_read+0x7 %di' >> /sys/kernel/tracing/kprobe_events
perf probe -a 'demo_write+5' -a demo_read%return
perf probe -m xfs xfs_buf_read_map
perf probe 'demo.c:42'
bpftrace -e 'kprobe:demo_read+3 { exit(); }'
