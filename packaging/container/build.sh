#!/usr/bin/env bash
# Builds the container image of closewatch:
#   1. the static binary, on the host:
#        RUSTFLAGS='-C target-feature=+crt-static' \
#          cargo build --release --target x86_64-unknown-linux-gnu
#      (glibc linked in: no loader, no libc in the image), checked to have
#      no program interpreter and to run;
#   2. the build context target/container/context/: the binary, stripped,
#      and packaging/closewatch.toml;
#   3. the image from packaging/container/Containerfile, with buildah (or
#      podman), tagged $IMAGE:<version> (default ghcr.io/closewatch/closewatch,
#      the DaemonSet's image), labelled with the version and the git commit,
#      its timestamps set to that commit's time so that a rebuild of the same
#      commit gives the same image.
#
#   packaging/container/build.sh               # binary, context, image
#   packaging/container/build.sh --binary-only # steps 1-2 (no container tool needed)
#
# Needs: Rust with the x86_64-unknown-linux-gnu target, binutils (strip,
# readelf); for the image, Debian's buildah or podman.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "container/build.sh: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

binary_only=""
case "${1:-}" in
"") ;;
--binary-only) binary_only=yes ;;
*) fail "usage: $0 [--binary-only]" ;;
esac

target=x86_64-unknown-linux-gnu
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
image=${IMAGE:-ghcr.io/closewatch/closewatch}:$version

# --- 1. the static binary. Its own target directory (the --target path):
# the flags differ from the host build's, so it never invalidates that one.
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$target" --bin closewatch
bin=target/$target/release/closewatch
if readelf -lW "$bin" | grep -q 'INTERP'; then
    fail "$bin asks for a program interpreter: it is not static"
fi
if readelf -dW "$bin" | grep -q '(NEEDED)'; then
    fail "$bin needs shared libraries: $(readelf -dW "$bin" | grep '(NEEDED)')"
fi
"$bin" --version >/dev/null || fail "$bin does not run"

# --- 2. the build context: only what the image holds.
context=target/container/context
rm -rf "$context"
mkdir -p "$context"
strip -o "$context/closewatch" "$bin"
cp packaging/closewatch.toml "$context/closewatch.toml"
say "static binary: $context/closewatch ($(stat -c %s "$context/closewatch") bytes stripped)"
[ -z "$binary_only" ] || exit 0

# --- 3. the image.
if [ -n "${TOOL:-}" ]; then
    tool=$TOOL
elif command -v buildah >/dev/null; then
    tool=buildah
elif command -v podman >/dev/null; then
    tool=podman
else
    fail "neither buildah nor podman is installed (Debian: apt-get install buildah)"
fi
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
"$tool" build \
    --file packaging/container/Containerfile \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" \
    --timestamp "$epoch" \
    --tag "$image" \
    "$context"
size=$("$tool" images --format '{{.Size}}' "$image" | head -1)
say "built $image ($size) with $tool"
