#!/usr/bin/env bash
# Install radare2 with its native debugger from Debian sid into a private prefix.
#
# radare2 is not in Debian 12, and sid's build needs sid's glibc (GLIBC_2.38+).  So:
# a private apt sources list naming sid (used only through options; the system's
# apt is left alone), `apt-get download` of radare2, its runtime library package
# (libradare2-<soversion>, whatever sid has now) and everything they depend on,
# resolved at install time (nothing pinned); `dpkg-deb -x` into
# $MULTIHEAP_R2_ROOT (default /opt/multiheap-r2); the unversioned libr_*.so links;
# patchelf so the binaries use the prefix's own loader and libraries.  Programs that
# r2 debugs still run on the system's glibc (nothing is put in LD_LIBRARY_PATH).
#
# Result: ROOT/bin/r2 and ROOT/bin/radare2 (wrappers setting R2_PREFIX), linked
# into the checkout's .venv/bin when it exists.  ROOT/VERSION names the version.
# Idempotent: quick and offline when installed.  MULTIHEAP_R2_REFRESH=1 re-resolves.
# Not root and something missing: prints the command and exits 1.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
root=${MULTIHEAP_R2_ROOT:-/opt/multiheap-r2}

link_venv() {
    local venv="$repo/.venv/bin"
    [ -d "$venv" ] || return 0
    for name in r2 radare2; do
        if [ "$(readlink "$venv/$name" 2>/dev/null)" != "$root/bin/$name" ]; then
            ln -sfn "$root/bin/$name" "$venv/$name"
        fi
    done
}

works() {
    [ -s "$root/VERSION" ] && "$root/bin/r2" -v >/dev/null 2>&1
}

if [ "${MULTIHEAP_R2_REFRESH:-0}" != 1 ] && works; then
    link_venv
    echo "setup: radare2 present in $root ($(cat "$root/VERSION"))"
    exit 0
fi

self="bash $repo/scripts/install/$(basename "$0")"
[ -n "${MULTIHEAP_R2_ROOT:-}" ] && self="MULTIHEAP_R2_ROOT=$root $self"
need_patchelf=0
command -v patchelf >/dev/null || need_patchelf=1
if [ "$(id -u)" != 0 ] && { [ "$need_patchelf" = 1 ] || ! mkdir -p "$root" 2>/dev/null \
        || [ ! -w "$root" ]; }; then
    {
        echo "setup: radare2 (Debian sid build, private prefix $root) is missing"
        echo "setup: not root; run this, then scripts/setup.sh --tests again:"
        if [ "$need_patchelf" = 1 ]; then
            echo "sudo sh -c 'apt-get install -y --no-install-recommends patchelf && env $self'"
        else
            echo "sudo env $self"
        fi
        echo "setup: (or set MULTIHEAP_R2_ROOT to a writable directory)"
    } >&2
    exit 1
fi
if [ "$need_patchelf" = 1 ]; then
    echo "setup: installing patchelf"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 \
        install -y -qq --no-install-recommends patchelf >/dev/null \
        || { apt-get -o DPkg::Lock::Timeout=120 update -qq && \
             DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 \
             install -y -qq --no-install-recommends patchelf >/dev/null; }
fi
for tool in apt-get apt-cache dpkg-deb patchelf; do
    command -v "$tool" >/dev/null || { echo "setup: $tool is needed for radare2" >&2; exit 1; }
done

mkdir -p "$root"
state="$root/.apt"
private_apt "$state" sid

# radare2 itself only Depends on libc6; its libraries are libradare2-<soversion>.
libpkg=$(apt-cache "${A[@]}" pkgnames libradare2- | grep -E '^libradare2-[0-9]' | sort -V | tail -n1)
[ -n "$libpkg" ] || { echo "setup: no libradare2-<version> package in sid" >&2; exit 1; }
ver=$(apt-cache "${A[@]}" show radare2 | awk '/^Version:/ { print $2; exit }')
# Runtime closure (Depends/Pre-Depends only), real packages only.
mapfile -t pkgs < <(apt-cache "${A[@]}" depends --recurse --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances radare2 "$libpkg" \
    | grep -v '^ ' | grep -v '^<' | sort -u)
echo "setup: sid has radare2 $ver; downloading ${pkgs[*]}"

dl="$state/debs"
rm -rf "$dl"
mkdir -p "$dl"
(cd "$dl" && apt-get "${A[@]}" download -qq "${pkgs[@]}")

tmp="$root/.tree.tmp$$"
unpack_debs "$dl" "$tmp"
lib="$tmp/usr/lib/x86_64-linux-gnu"
final_lib="$root/usr/lib/x86_64-linux-gnu"
[ -e "$lib/ld-linux-x86-64.so.2" ] || { echo "setup: sid's loader not found in $lib" >&2; exit 1; }

# The unversioned libr_*.so names (the -dev package's links).
for so in "$lib"/libr_*.so.*; do
    [ -f "$so" ] || continue
    base=$(basename "$so")
    ln -sfn "$base" "$lib/${base%%.so.*}.so"
done

# The binaries use the prefix's loader; every r2 object finds the prefix's libraries.
for f in "$tmp"/usr/bin/*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    head -c4 "$f" | grep -q 'ELF' || continue
    patchelf --set-interpreter "$final_lib/ld-linux-x86-64.so.2" --set-rpath "$final_lib" "$f"
done
for f in "$lib"/libr_*.so.*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    patchelf --set-rpath "$final_lib" "$f"
done

mkdir -p "$tmp/bin"
for name in r2 radare2; do
    cat >"$tmp/bin/$name" <<EOF
#!/bin/sh
# radare2 $ver from Debian sid, private prefix (scripts/install/radare2.sh)
R2_PREFIX='$root/usr'
export R2_PREFIX
exec '$root/usr/bin/radare2' "\$@"
EOF
    chmod 755 "$tmp/bin/$name"
done
echo "$ver" >"$tmp/VERSION"

rm -rf "$root/usr" "$root/bin" "$root/VERSION"
mv "$tmp/usr" "$root/usr"
mv "$tmp/bin" "$root/bin"
mv "$tmp/VERSION" "$root/VERSION"
rm -rf "$tmp" "$dl"

if ! out=$("$root/bin/r2" -v 2>&1); then
    echo "setup: radare2 unpacked in $root but does not start:" >&2
    echo "$out" >&2
    exit 1
fi
link_venv
echo "setup: radare2 $ver ready in $root ($(echo "$out" | head -n1))"
