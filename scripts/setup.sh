#!/usr/bin/env bash
# Set up everything multiheap needs on a Debian/Ubuntu machine.
#
#   scripts/setup.sh           gdb, gdbserver, glibc debug info, compiler, .venv
#   scripts/setup.sh --tests   also 32-bit toolchain and i386 glibc debug info
#
# Idempotent and quick when everything is present: apt is only touched (and
# `apt-get update` only run) when a package is missing, and pip only runs when
# pyproject.toml changed since the last successful install (stamp file).
#
# Not root and a package missing: prints the command to run and exits 1
# (this script never calls sudo itself).
#
# Testing hook: MULTIHEAP_SETUP_FAKE_MISSING="pkg ..." reports those packages
# as missing even when installed, to exercise the install / not-root paths.
set -euo pipefail

usage() {
    sed -n '2,15s/^# \{0,1\}//p' "$0"
}

with_tests=0
for arg in "$@"; do
    case "$arg" in
        --tests) with_tests=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

log() { echo "setup: $*"; }

# ---------------------------------------------------------------- apt packages
pkgs=(gdb gdbserver libc6-dbg python3-venv gcc make)
need_i386=0
if [ "$with_tests" = 1 ]; then
    # gcc-multilib brings libc6-dev-i386 (amd64), which is all `gcc -m32`
    # needs; libc6-dbg:i386 brings libc6:i386, so 32-bit programs load
    # /lib/i386-linux-gnu/libc.so.6 and gdb finds its debug info by build-id.
    # libc6-dev:i386 is deliberately left out: it adds nothing for that, and it
    # pins linux-libc-dev:i386 to the amd64 version, which may only exist in
    # bookworm-security, whose i386 index a mirror mid-sync can fail to serve.
    # musl-tools: a libc that is not glibc, which multiheap must recognise and refuse.
    # chromium: tests/test_ptmap.py opens ptmap's pages headless (--no-sandbox as root).
    # perl, sqlite3, g++: real programs ptcheck must give no false alarm on (test_ptcheck).
    pkgs+=(gcc-multilib libc6-dbg:i386 musl-tools chromium perl sqlite3 g++)
    need_i386=1
fi

. scripts/lib/apt.sh
missing_packages "${pkgs[@]}"

add_arch=0
if [ "$need_i386" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx i386; then
    add_arch=1
fi

if [ "${#missing[@]}" -gt 0 ]; then
    apt_install="DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
        cmd="apt-get update && $apt_install"
        if [ "$add_arch" = 1 ]; then
            cmd="dpkg --add-architecture i386 && $cmd"
        fi
        args=""
        [ "$with_tests" = 1 ] && args=" --tests"
        {
            echo "setup: missing system packages: ${missing[*]}"
            echo "setup: not root; run this, then run scripts/setup.sh${args} again:"
            echo "sudo sh -c '$cmd'"
        } >&2
        exit 1
    fi
    if [ "$add_arch" = 1 ]; then
        log "adding dpkg architecture i386"
        dpkg --add-architecture i386
    fi
    # apt_install always updates first: a newly added architecture has no lists.
    apt_install "${missing[@]}"
else
    log "system packages present"
fi

# ------------------------------------------------------------------ virtualenv
# gdb embeds the system interpreter, so the venv must be built from it.
if [ -x /usr/bin/python3 ]; then
    py=/usr/bin/python3
else
    py=$(command -v python3) || { echo "setup: no python3 found" >&2; exit 1; }
    log "warning: /usr/bin/python3 missing, using $py (gdb will not see .venv)"
fi

venv=.venv
stamp=$venv/.multiheap-stamp
want_base=$("$py" -c 'import sys; print(sys.base_prefix)')
have_base=$("$venv/bin/python" -c 'import sys; print(sys.base_prefix)' 2>/dev/null || true)
if [ "$have_base" != "$want_base" ]; then
    if [ -e "$venv" ]; then
        log "recreating $venv (missing, broken or built from another interpreter)"
        rm -rf "$venv"
    else
        log "creating $venv with $py"
    fi
    "$py" -m venv "$venv"
fi

want_sum=$(sha256sum pyproject.toml | cut -d' ' -f1)
have_sum=$(cat "$stamp" 2>/dev/null || true)
if [ "$have_sum" = "$want_sum" ] && [ -x "$venv/bin/multiheap" ]; then
    log "$venv up to date"
else
    log "pip install -e '.[test,triage]' into $venv"
    rm -f "$stamp"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install -q -e '.[test,triage]'
    if [ ! -x "$venv/bin/multiheap" ]; then
        echo "setup: $venv/bin/multiheap missing after pip install" >&2
        exit 1
    fi
    echo "$want_sum" >"$stamp"
    log "$venv ready"
fi

# ------------------------------------------------------- optional components
# Each scripts/install/NAME.sh installs one thing the test suite needs beyond
# the above (lldb, radare2, other glibc builds).  They follow the same rules:
# idempotent, fast when done, print the exact command for a non-root user.
if [ "$with_tests" = 1 ]; then
    for part in scripts/install/*.sh; do
        [ -e "$part" ] || continue
        bash "$part"
    done
fi
