#!/usr/bin/env bash
# Install lldb 19 beside lldb 16, in a private prefix (for the completion tests).
#
# Debian 12 has lldb-19, but python3-lldb-19 conflicts with python3-lldb-16 (both
# own /usr/lib/python3/dist-packages/lldb), so `apt-get install` would remove the
# lldb 16 the suite runs on.  Instead: `apt-get download` of the llvm-19 packages
# (lldb-19, liblldb-19, python3-lldb-19, libllvm19, libclang-cpp19), `dpkg-deb -x`
# into $MULTIHEAP_LLDB19_ROOT (default /opt/multiheap-lldb19), patchelf so lldb,
# lldb-server and liblldb find the prefix's libraries (no LD_LIBRARY_PATH reaches
# the debugged program), and the liblldb.so link `import lldb` outside lldb needs
# (liblldb-19-dev's).  Their other dependencies are ordinary Debian 12 libraries,
# installed with apt when missing (they remove nothing).
#
# Result: ROOT/bin/lldb-19 (the binary; `ROOT/bin/lldb-19 -P` names its Python
# package), linked into the checkout's .venv/bin when it exists.  ROOT/VERSION.
# Idempotent: quick and offline when installed.  MULTIHEAP_LLDB19_REFRESH=1 redoes it.
# Not root and something missing: prints the command and exits 1.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
root=${MULTIHEAP_LLDB19_ROOT:-/opt/multiheap-lldb19}
own=(lldb-19 liblldb-19 python3-lldb-19 libllvm19 libclang-cpp19)

link_venv() {
    local venv="$repo/.venv/bin"
    [ -d "$venv" ] || return 0
    if [ "$(readlink "$venv/lldb-19" 2>/dev/null)" != "$root/bin/lldb-19" ]; then
        ln -sfn "$root/bin/lldb-19" "$venv/lldb-19"
    fi
}

works() {
    [ -s "$root/VERSION" ] && "$root/bin/lldb-19" -b \
        -o 'script import lldb; print("lldb python ok")' 2>/dev/null | grep -q 'lldb python ok'
}

if [ "${MULTIHEAP_LLDB19_REFRESH:-0}" != 1 ] && works; then
    link_venv
    echo "setup: lldb-19 present in $root ($(cat "$root/VERSION"))"
    exit 0
fi

# The llvm-19 packages' other runtime dependencies (system libraries).
mapfile -t deps < <(apt-cache depends --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "${own[@]}" 2>/dev/null \
    | awk '$1 == "Depends:" && $2 !~ /^</ { print $2 }' | sort -u)
others=()
for d in "${deps[@]}"; do
    [[ " ${own[*]} " == *" $d "* ]] || others+=("$d")
done
[ "${#others[@]}" -gt 0 ] || { echo "setup: apt knows no lldb-19 (apt-get update?)" >&2; exit 1; }
missing_packages "${others[@]}" patchelf

self="bash $repo/scripts/install/$(basename "$0")"
[ -n "${MULTIHEAP_LLDB19_ROOT:-}" ] && self="MULTIHEAP_LLDB19_ROOT=$root $self"
if [ "$(id -u)" != 0 ] && { [ "${#missing[@]}" -gt 0 ] || ! mkdir -p "$root" 2>/dev/null \
        || [ ! -w "$root" ]; }; then
    {
        echo "setup: lldb-19 (Debian 12's, private prefix $root) is missing"
        echo "setup: not root; run this, then scripts/setup.sh --tests again:"
        if [ "${#missing[@]}" -gt 0 ]; then
            echo "sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]} && env $self'"
        else
            echo "sudo env $self"
        fi
        echo "setup: (or set MULTIHEAP_LLDB19_ROOT to a writable directory)"
    } >&2
    exit 1
fi
[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"

mkdir -p "$root"
dl="$root/.debs"
rm -rf "$dl"
mkdir -p "$dl"
echo "setup: downloading ${own[*]}"
if ! (cd "$dl" && apt-get download -qq "${own[@]}" 2>/dev/null); then
    apt-get -o DPkg::Lock::Timeout=120 update -qq || true
    (cd "$dl" && apt-get download -qq "${own[@]}")
fi
ver=$(dpkg-deb -f "$dl"/lldb-19_*.deb Version)

tmp="$root/.tree.tmp$$"
unpack_debs "$dl" "$tmp"
lib="$tmp/usr/lib/x86_64-linux-gnu"
final_lib="$root/usr/lib/x86_64-linux-gnu"
llvm="$tmp/usr/lib/llvm-19"
[ -f "$lib/liblldb-19.so.1" ] || { echo "setup: liblldb-19.so.1 not in the packages" >&2; exit 1; }
for f in "$llvm/bin/lldb" "$llvm/bin/lldb-server" "$lib/liblldb-19.so.1" \
         "$lib/libclang-cpp.so.19.1"; do
    patchelf --set-rpath "$final_lib" "$f"
done
# What liblldb-19-dev adds: the link python's _lldb module points at.
ln -sfn liblldb.so.1 "$llvm/lib/liblldb.so"
mkdir -p "$tmp/bin"
ln -sfn "$root/usr/lib/llvm-19/bin/lldb" "$tmp/bin/lldb-19"
ln -sfn "$root/usr/lib/llvm-19/bin/lldb-server" "$tmp/bin/lldb-server-19"
echo "$ver" >"$tmp/VERSION"

rm -rf "$root/usr" "$root/bin" "$root/VERSION"
mv "$tmp/usr" "$root/usr"
mv "$tmp/bin" "$root/bin"
mv "$tmp/VERSION" "$root/VERSION"
rm -rf "$tmp" "$dl"

if ! works; then
    echo "setup: lldb-19 unpacked in $root but its Python does not load:" >&2
    "$root/bin/lldb-19" -b -o 'script import lldb' >&2 || true
    exit 1
fi
link_venv
echo "setup: lldb-19 $ver ready in $root ($("$root/bin/lldb-19" --version | head -n1))"
