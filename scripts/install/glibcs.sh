#!/usr/bin/env bash
# Fetch other Debian releases' glibc (libc6, libc6-dev, libc6-dbg) for the test matrix.
#
#   bullseye (2.31), trixie (2.41), sid (2.43): each suite's current version is
#   resolved at install time (nothing pinned), downloaded with a private apt
#   sources list used only through options (the system's apt is left alone),
#   and unpacked under $MULTIHEAP_GLIBC_ROOT (default /opt/multiheap-glibc) as
#   ROOT/<suite>/ with a VERSION file naming the exact package version.
#   linux-libc-dev (kernel headers: asm/, linux/) joins each, so that programs
#   including <sys/syscall.h> build with --sysroot.
#
# 2.31 gets the lib64/ld-linux-x86-64.so.2 link that `gcc --sysroot` needs.
# Idempotent: a suite whose VERSION file exists is skipped without network.
# MULTIHEAP_GLIBC_REFRESH=1 re-resolves every suite (e.g. after sid moved).
# Not root and the root is not writable: prints the command and exits 1.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"

root=${MULTIHEAP_GLIBC_ROOT:-/opt/multiheap-glibc}
suites=(bullseye trixie sid)
pkgs=(libc6 libc6-dev libc6-dbg)

# Debian's -dev packages link e.g. libpthread.so to /lib/...: absolute targets would
# send `gcc --sysroot` to the system's glibc, so point them inside the root instead.
# Merged-/usr suites (2.41+) keep everything in usr/lib, but their libc.so linker
# script may still name /lib/...: give the root the lib -> usr/lib link a system has.
fix_links() {
    local dir=$1 link target
    [ -e "$dir/lib" ] || ln -s usr/lib "$dir/lib"
    [ -e "$dir/.links-fixed" ] && return 0
    find "$dir" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
        target=$(readlink "$link")
        ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$dir$target")" "$link"
    done
    touch "$dir/.links-fixed"
}

todo=()
for s in "${suites[@]}"; do
    [ -s "$root/$s/VERSION" ] && [ -w "$root/$s" ] && fix_links "$root/$s"
    if [ "${MULTIHEAP_GLIBC_REFRESH:-0}" = 1 ] || [ ! -s "$root/$s/VERSION" ] \
            || [ ! -e "$root/$s/usr/include/asm-generic/unistd.h" ]; then
        todo+=("$s")
    fi
done
if [ "${#todo[@]}" -eq 0 ]; then
    echo "setup: glibc builds present in $root ($(cat "$root"/*/VERSION | tr '\n' ' '))"
    exit 0
fi

if ! mkdir -p "$root" 2>/dev/null || [ ! -w "$root" ]; then
    {
        echo "setup: glibc builds for the test matrix missing in $root (${todo[*]})"
        echo "setup: not allowed to write there; run this, then scripts/setup.sh --tests again:"
        echo "sudo ${MULTIHEAP_GLIBC_ROOT:+MULTIHEAP_GLIBC_ROOT=$root }bash $(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
        echo "setup: (or set MULTIHEAP_GLIBC_ROOT to a writable directory)"
    } >&2
    exit 1
fi
for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "setup: $tool is needed for the glibc builds" >&2; exit 1; }
done

state="$root/.apt"
mkdir -p "$state/debs"
private_apt "$state" "${todo[@]}"

for s in "${todo[@]}"; do
    # the version this suite has now: the candidate of libc6 from its Packages file
    ver=$(apt-cache "${A[@]}" madison libc6 | awk -v s="$s" '$0 ~ ("/" s "[ /]") || $0 ~ (" " s "/") { print $3; exit }')
    if [ -z "$ver" ]; then
        ver=$(apt-cache "${A[@]}" -o "APT::Default-Release=$s" policy libc6 \
            | awk '/Candidate:/ { print $2; exit }')
    fi
    [ -n "$ver" ] || { echo "setup: no libc6 found in $s" >&2; exit 1; }
    echo "setup: $s has glibc $ver; downloading ${pkgs[*]}"
    dl="$state/debs/$s"
    rm -rf "$dl"
    mkdir -p "$dl"
    kver=$(apt-cache "${A[@]}" madison linux-libc-dev | awk -v s="$s" '$0 ~ ("/" s "[ /]") || $0 ~ (" " s "/") { print $3; exit }')
    (cd "$dl" && apt-get "${A[@]}" download -qq $(printf "%s=$ver " "${pkgs[@]}") \
        "linux-libc-dev${kver:+=$kver}")
    tmp="$root/.$s.tmp$$"
    unpack_debs "$dl" "$tmp"
    # 2.31 keeps its loader in /lib/x86_64-linux-gnu; the linker looks in /lib64
    if [ ! -e "$tmp/lib64/ld-linux-x86-64.so.2" ]; then
        for cand in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
            if [ -e "$tmp/$cand/ld-linux-x86-64.so.2" ]; then
                mkdir -p "$tmp/lib64"
                ln -sfn "../$cand/ld-linux-x86-64.so.2" "$tmp/lib64/ld-linux-x86-64.so.2"
                break
            fi
        done
    fi
    fix_links "$tmp"
    echo "$ver" >"$tmp/VERSION"
    rm -rf "$root/$s"
    mv "$tmp" "$root/$s"
    rm -rf "$dl"
    echo "setup: glibc $ver unpacked in $root/$s"
done
