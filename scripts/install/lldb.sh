#!/usr/bin/env bash
# Install lldb 16 with its Python bindings (Debian's lldb-16 packages).
#
# Debian 12's default lldb (14) is broken for Python ("No module named
# 'lldb.embedded_interpreter'"), so multiheap uses 16.  liblldb-16-dev supplies
# the liblldb.so link that `import lldb` outside lldb needs.  Launching from the
# Python API needs LLDB_DEBUGSERVER_PATH=/usr/lib/llvm-16/bin/lldb-server, which
# multiheap sets itself.
#
# Idempotent: quick when installed.  Not root and missing: prints the command
# and exits 1.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"

missing_packages lldb-16 python3-lldb-16 liblldb-16-dev
if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: lldb-16 present"
    exit 0
fi

cmd="DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
    {
        echo "setup: missing system packages: ${missing[*]}"
        echo "setup: not root; run this, then run scripts/setup.sh --tests again:"
        echo "sudo sh -c 'apt-get update && $cmd'"
    } >&2
    exit 1
fi

apt_install "${missing[@]}"

# Check that the Python bindings really load (the trap of lldb-14).
if ! /usr/lib/llvm-16/bin/lldb -b -o 'script import lldb, sys; print("lldb python", sys.version.split()[0])' \
        >/dev/null 2>&1; then
    echo "setup: lldb-16 installed but its Python does not work" >&2
    exit 1
fi
echo "setup: lldb-16 ready"
