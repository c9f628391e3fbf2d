#!/usr/bin/env bash
# Rebuilds bpf/attribution.bpf.o from attribution.bpf.c: vmlinux.h from the
# running kernel's BTF, clang for the BPF target, debug info stripped (the
# BTF the loader needs stays). Needs clang, llvm-strip, bpftool, and
# libbpf's headers (Debian: clang llvm bpftool libbpf-dev).
#
#   bpf/build.sh           rebuild the committed object
#   bpf/build.sh --check   rebuild into target/ and fail if it differs
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/attribution.bpf.o
work=$here/../target/bpf
mkdir -p "$work"
bpftool btf dump file /sys/kernel/btf/vmlinux format c >"$work/vmlinux.h"
# Built from bpf/ with relative paths: the BTF line info names the source
# file, and must not depend on where the repository is checked out.
(cd "$here" && clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -I../target/bpf \
    -fdebug-prefix-map="$here"=bpf \
    -c attribution.bpf.c -o ../target/bpf/attribution.bpf.o)
llvm-strip -g "$work/attribution.bpf.o"
if [[ ${1:-} == --check ]]; then
    if ! cmp -s "$work/attribution.bpf.o" "$out"; then
        echo "bpf/attribution.bpf.o differs from a rebuild of attribution.bpf.c:" >&2
        echo "run bpf/build.sh and commit the object" >&2
        exit 1
    fi
    echo "bpf/attribution.bpf.o matches its source"
else
    cp "$work/attribution.bpf.o" "$out"
    echo "wrote $out ($(stat -c %s "$out") bytes)"
fi
