#!/usr/bin/env bash
# Install what the aarch64 and armhf tests need: qemu-user, gdb-multiarch, a cross
# toolchain, the cross C libraries, and each target's libc with its debug info.
#
# Compiler: clang-16 --target=aarch64-linux-gnu / arm-linux-gnueabihf with
# binutils-*, libc6-dev-*-cross and libgcc-12-dev-*-cross.  Not gcc-aarch64-linux-gnu:
# on Debian 12 it removes gcc-multilib, which the i386 tests need (and installing
# gcc-multilib again removes the cross gcc); this set removes nothing.
#
# Debug info: the -cross libcs have no debug package, so the with-debug cells run on
# Debian's own libc (libc6:ARCH + libc6-dbg:ARCH, same build), downloaded with
# apt-get download after `dpkg --add-architecture ARCH` (apt-get update passed with
# arm64 and armhf added, 2026-12-01) and unpacked (dpkg-deb -x, nothing installed for
# ARCH) into $MULTIHEAP_ARM_ROOT/ARCH (default /opt/multiheap-arm): a sysroot for
# qemu -L and gdb's sysroot, its usr/lib/debug for gdb's debug-file-directory.
# riscv64: Debian 12 has no riscv64 port (no libc6:riscv64, no libc6-dbg), so only the
# cross libc (libc6-dev-riscv64-cross) and no debug cells.
#
# Idempotent: quick when done.  Not root and missing: prints the command, exits 1.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"

root=${MULTIHEAP_ARM_ROOT:-/opt/multiheap-arm}
arches=(arm64 armhf)
missing_packages qemu-user gdb-multiarch clang-16 binutils-aarch64-linux-gnu \
    libc6-dev-arm64-cross libgcc-12-dev-arm64-cross binutils-arm-linux-gnueabihf \
    libc6-dev-armhf-cross libgcc-12-dev-armhf-cross binutils-riscv64-linux-gnu \
    libc6-dev-riscv64-cross libgcc-12-dev-riscv64-cross
need_root=0
[ "${#missing[@]}" -eq 0 ] || need_root=1
for a in "${arches[@]}"; do
    [ -s "$root/$a/VERSION" ] || need_root=1
done
if [ "$need_root" = 0 ]; then
    echo "setup: arm tools present (libc $(cat "$root/arm64/VERSION") in $root/{${arches[*]}})"
    exit 0
fi

cmd="DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
    {
        echo "setup: arm tools missing: ${missing[*]:-} (or the sysroots in $root)"
        echo "setup: not root; run this, then run scripts/setup.sh --tests again:"
        echo "sudo bash $(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
        [ "${#missing[@]}" -eq 0 ] || echo "setup: (its apt part: sudo sh -c 'apt-get update && $cmd')"
    } >&2
    exit 1
fi

if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

updated=0
for a in "${arches[@]}"; do
    [ -s "$root/$a/VERSION" ] && continue
    if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
        dpkg --add-architecture "$a"
        updated=0
    fi
    if [ "$updated" = 0 ]; then
        if ! apt-get -o DPkg::Lock::Timeout=120 update -qq; then
            echo "setup: warning: apt-get update reported errors; trying the download anyway"
        fi
        updated=1
    fi
    dl="$root/$a/.debs"
    rm -rf "$dl"
    mkdir -p "$dl"
    (cd "$dl" && apt-get -o APT::Sandbox::User=root download "libc6:$a" "libc6-dbg:$a")
    unpack_debs "$dl" "$root/$a/sysroot"
    dpkg-deb -f "$dl"/libc6_*_"$a".deb Version >"$root/$a/VERSION"
done
echo "setup: arm tools ready (libc $(cat "$root/arm64/VERSION") in $root/{${arches[*]}})"
