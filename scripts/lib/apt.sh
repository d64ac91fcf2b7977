# Shared by scripts/setup.sh and scripts/install/*.sh (sourced, not run).

# missing_packages PKG... : sets the array `missing` to those not installed.
# MULTIHEAP_SETUP_FAKE_MISSING="pkg ..." reports packages as missing (to test
# the install and not-root paths).
missing_packages() {
    local fake=" ${MULTIHEAP_SETUP_FAKE_MISSING:-} " p status
    missing=()
    for p in "$@"; do
        if [[ "$fake" == *" $p "* ]]; then
            missing+=("$p")
            continue
        fi
        # "install ok installed" or "hold ok installed"; anything else, or no
        # answer (an i386 package before the architecture is added), is missing.
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$status" in
            *" ok installed") ;;
            *) missing+=("$p") ;;
        esac
    done
}

# debian_mirror : prints the first Debian mirror apt is configured with.
debian_mirror() {
    local m
    m=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
        /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    if [ -z "$m" ]; then
        m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
            /etc/apt/sources.list 2>/dev/null || true)
    fi
    [ -n "$m" ] || { echo "setup: no Debian mirror found in /etc/apt/sources.list*" >&2; return 1; }
    echo "$m"
}

# private_apt STATE_DIR SUITE... : apt options in the array `A` for a private
# sources list naming those suites (the system's apt state is left alone),
# then `apt-get update` with them.
private_apt() {
    local state=$1 mirror s
    shift
    mirror=$(debian_mirror)
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
    : >"$state/sources.list"
    for s in "$@"; do
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $s main" \
            >>"$state/sources.list"
    done
    A=(-o "Dir::Etc::sourcelist=$state/sources.list" -o "Dir::Etc::sourceparts=-"
       -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
       -o "Dir::State::status=/dev/null" -o "APT::Architecture=amd64"
       -o "APT::Architectures=amd64" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
    echo "setup: apt-get update (private list: $*)"
    apt-get "${A[@]}" update -qq
}

# apt_install PKG... : as root, update the lists (a fresh machine may have
# none) and install.  A mirror caught mid-sync can fail one index while the
# packages we need come from another: warn, and let the install decide.
apt_install() {
    echo "setup: installing $*"
    if ! apt-get -o DPkg::Lock::Timeout=120 update -qq; then
        echo "setup: warning: apt-get update reported errors (above); installing with the lists apt has"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 \
        install -y -qq --no-install-recommends "$@"
}

# unpack_debs DIR_OF_DEBS DEST : every .deb's files into DEST (made empty first).
unpack_debs() {
    local deb
    rm -rf "$2"
    mkdir -p "$2"
    for deb in "$1"/*.deb; do
        dpkg-deb -x "$deb" "$2"
    done
}
