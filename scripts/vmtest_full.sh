#!/bin/sh
# The full ground-truth comparison: ~3000 probes drawn from Debian's 6.1 cloud kernel (vmlinux +
# xfs.ko), run in the booted kernel under QEMU on two CPU models, graded against probelint.
# Regenerates docs/validation.md (never edit it by hand) and leaves the raw data in
# build/vmtest/ (sample, JSON, text report).  About 20-30 s per 300-probe boot per CPU model.
#
#   scripts/vmtest_full.sh            # N=3000 SEED=1 CPUS="qemu64 EPYC-Rome"
#   N=600 CPUS=qemu64 scripts/vmtest_full.sh
#   KERNEL=linux-image-6.12.117+deb12-cloud-amd64 VALIDATION=docs/validation-6.12.md scripts/vmtest_full.sh
set -eu
cd "$(dirname "$0")/.."
N=${N:-3000}
SEED=${SEED:-1}
CPUS=${CPUS:-"qemu64 EPYC-Rome"}
KERNEL=${KERNEL:-linux-image-6.1.0-56-cloud-amd64}
VALIDATION=${VALIDATION:-docs/validation.md}
PAIRS_DOC=${PAIRS_DOC:-docs/validation-pairs.md}
OUT=${OUT:-build/vmtest}
mkdir -p "$OUT"
cpu_args=""
for c in $CPUS; do cpu_args="$cpu_args --cpu $c"; done
# shellcheck disable=SC2086
probelint vmtest --kernel-package "$KERNEL" --sample "$N" --seed "$SEED" --module xfs $cpu_args -v \
    --save-sample "$OUT/sample.txt" --json-file "$OUT/vmtest.json" \
    --write-validation "$VALIDATION" > "$OUT/report.txt"
echo "wrote $VALIDATION, $OUT/report.txt, $OUT/vmtest.json, $OUT/sample.txt"
# Probe interaction: pairs through a jump window, A then B, B then A, together.
# shellcheck disable=SC2086
probelint vmtest --kernel-package "$KERNEL" --pairs "${PAIRS:-60}" --seed "$SEED" $cpu_args \
    --write-pairs "$PAIRS_DOC" > "$OUT/pairs.txt"
echo "wrote $PAIRS_DOC, $OUT/pairs.txt"
