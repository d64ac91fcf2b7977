#!/usr/bin/env bash
# Install what the aarch64 tests need: qemu-user, gdb-multiarch, a cross toolchain,
# aarch64 C libraries, and a target libc with its debug info.
#
# Compiler: clang-16 --target=aarch64-linux-gnu with binutils-aarch64-linux-gnu,
# libc6-dev-arm64-cross and libgcc-12-dev-arm64-cross.  Not gcc-aarch64-linux-gnu:
# on Debian 12 it removes gcc-multilib, which the i386 tests need (and installing
# gcc-multilib again removes the cross gcc); this set removes nothing.
#
# Debug info: libc6-arm64-cross has no debug package, so the with-debug cells run on
# Debian's own arm64 libc (libc6:arm64 + libc6-dbg:arm64, same build), downloaded with
# apt-get download after `dpkg --add-architecture arm64` and unpacked (dpkg-deb -x,
# nothing installed for arm64) into $MULTIHEAP_ARM64_ROOT (default
# /opt/multiheap-arm64): a sysroot for qemu -L and gdb's sysroot, its
# usr/lib/debug for gdb's debug-file-directory.
#
# Idempotent: quick when done.  Not root and missing: prints the command, exits 1.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"

root=${MULTIHEAP_ARM64_ROOT:-/opt/multiheap-arm64}
missing_packages qemu-user gdb-multiarch clang-16 binutils-aarch64-linux-gnu \
    libc6-dev-arm64-cross libgcc-12-dev-arm64-cross
need_root=0
[ "${#missing[@]}" -eq 0 ] || need_root=1
[ -s "$root/VERSION" ] || need_root=1
if [ "$need_root" = 0 ]; then
    echo "setup: aarch64 tools present (arm64 libc $(cat "$root/VERSION") in $root)"
    exit 0
fi

cmd="DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
    {
        echo "setup: aarch64 tools missing: ${missing[*]:-} ${root}/VERSION"
        echo "setup: not root; run this, then run scripts/setup.sh --tests again:"
        echo "sudo bash $(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
        [ "${#missing[@]}" -eq 0 ] || echo "setup: (its apt part: sudo sh -c 'apt-get update && $cmd')"
    } >&2
    exit 1
fi

if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

if [ ! -s "$root/VERSION" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    if ! apt-get -o DPkg::Lock::Timeout=120 update -qq; then
        echo "setup: warning: apt-get update reported errors; trying the download anyway"
    fi
    dl="$root/.debs"
    rm -rf "$dl"
    mkdir -p "$dl"
    (cd "$dl" && apt-get -o APT::Sandbox::User=root download libc6:arm64 libc6-dbg:arm64)
    unpack_debs "$dl" "$root/sysroot"
    ver=$(dpkg-deb -f "$dl"/libc6_*_arm64.deb Version)
    echo "$ver" >"$root/VERSION"
fi
echo "setup: aarch64 tools ready (arm64 libc $(cat "$root/VERSION") in $root)"
