#!/usr/bin/env bash
# Run a command under Python 3.14/3.15 or PyPy (pypy3) from a Debian sid chroot.
#
#   bash compat/sid.sh 3.14 CMD [ARGS...]   # run CMD in /src (= this repo); also 3.15, pypy3
#   bash compat/sid.sh 3.13t CMD [ARGS...]  # free-threaded 3.13 that compat/ft_build.sh built
#   bash compat/sid.sh --root [--locked] CMD [ARGS...]
#                                           # CMD as the chroot's root, no venv; --locked keeps
#                                           # the chroot's lock while it runs (apt, dpkg)
#   bash compat/sid.sh --teardown           # unmount everything (keeps chroot)
#
# Each run mounts /proc, /dev and /src (this checkout) in a private mount
# namespace of its own (unshare -m): the mounts vanish when CMD exits, and
# checkouts sharing one chroot (worktrees, CI clones) never see each other's
# /src.  --teardown removes mounts left in the host namespace by older runs.
#
# Env: CHILDWATCH_SID_ROOT   chroot dir (default /var/tmp/childwatch-sid)
#      CHILDWATCH_SID_PIP    args for "pip install" run in the venv first,
#                            e.g. "-e /src[test]" or "pytest uvloop"
#      CHILDWATCH_SID_MIRROR Debian mirror for debootstrap (default: its own)
# The venv is /opt/venv-$VERSION inside the chroot; CMD sees it first on PATH.
set -euo pipefail

VERSIONS="3.14 3.15 pypy3"
FT_VERSIONS="3.13t 3.14t 3.15t"   # no Debian package: compat/ft_build.sh builds them in the chroot
ROOT=${CHILDWATCH_SID_ROOT:-/var/tmp/childwatch-sid}
ROOT=${ROOT%/}
STAMP="$ROOT/.childwatch-sid-provisioned"
LOCK="$ROOT.lock"     # outside the chroot so it survives a re-provision
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

die() { echo "sid.sh: error: $*" >&2; exit 1; }
log() { echo "sid.sh: $*" >&2; }

usage() {
    echo "usage: bash compat/sid.sh {$(echo "$VERSIONS $FT_VERSIONS" | tr ' ' '|')} CMD [ARGS...]" >&2
    echo "       bash compat/sid.sh --root [--locked] CMD [ARGS...]" >&2
    echo "       bash compat/sid.sh --teardown" >&2
    exit 2
}

# Mount points at or below $ROOT, deepest first (reverse sort puts
# children before their parents).
mounts_under() {
    awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r
}

teardown() {
    local mp tries=0
    # Loop: a path may carry stacked mounts; fall back to a lazy unmount.
    while [[ -n "$(mounts_under)" ]]; do
        (( tries++ < 5 )) || die "could not unmount: $(mounts_under | tr '\n' ' ')"
        while read -r mp; do
            umount "$mp" 2>/dev/null || umount -l "$mp" || true
        done < <(mounts_under)
    done
}

# Bind/mount only if not already a mount point (no duplicates on re-runs).
# Binds are made private so nothing propagates back to the host's mounts.
mount_once() {
    local dst=$1; shift
    mkdir -p "$dst"
    mountpoint -q "$dst" && return 0
    mount "$@" "$dst"
    mount --make-private "$dst"
}

provision() {
    # A chroot without the stamp is half-made: unmount (so rm can never reach
    # the bind-mounted repo or /dev) and start over.
    teardown
    [[ -z "$(mounts_under)" ]] || die "mounts remain under $ROOT; refusing to delete it"
    rm -rf --one-file-system "$ROOT"
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap via apt"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; } >&2 \
            || die "could not install debootstrap with apt-get"
    fi
    local pkgs="ca-certificates" v
    for v in $VERSIONS; do pkgs+=",$(packages "$v" | tr ' ' ',')"; done
    log "debootstrapping Debian sid into $ROOT (takes ~30s+)"
    # shellcheck disable=SC2086  # optional mirror argument
    if ! debootstrap --variant=minbase --include="$pkgs" sid "$ROOT" ${CHILDWATCH_SID_MIRROR:-} >&2; then
        die "debootstrap failed (see $ROOT/debootstrap/debootstrap.log); rerun to retry from scratch"
    fi
    touch "$STAMP"
}

# The interpreter of a version, and the Debian packages it needs
# (libpython3.X-testsuite: CPython's own test package, for compat/cpython_suite.py).
# A free-threaded X.Yt is compat/ft_build.sh's build, in /opt/pyXYt (e.g. /opt/py313t/bin/python3.13t).
interpreter() {
    case $1 in
        pypy3) echo pypy3 ;;
        *t) echo "/opt/py${1//./}/bin/python$1" ;;
        *) echo "python$1" ;;
    esac
}
# What the loops from PyPI load beside CPython: libpython for talyn's extension,
# and for PySide6 (qasync's Qt, run headless) the libraries its Qt links to.
QT_LIBS="libegl1 libgl1 libx11-6 libdbus-1-3 libfontconfig1 libfreetype6 libglib2.0-0t64 libxkbcommon0"

packages() {
    if [[ $1 == pypy3 ]]; then
        echo "pypy3 pypy3-venv"
    else
        echo "python$1 python$1-venv libpython$1-testsuite libpython$1 $QT_LIBS"
    fi
}

# A chroot provisioned before some of those packages were asked for gets them
# here (the sid index is a snapshot: its Valid-Until has passed).
ensure_packages() {
    local v p missing=""
    for v in $VERSIONS; do
        for p in $(packages "$v"); do
            [[ -f "$ROOT/var/lib/dpkg/info/$p.list" || -f "$ROOT/var/lib/dpkg/info/$p:amd64.list" ]] || missing+=" $p"
        done
    done
    [[ -z $missing ]] && return 0
    log "installing$missing in the chroot"
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c "apt-get -q -o Acquire::Check-Valid-Until=false update && apt-get install -y -q$missing" >&2 \
        || die "could not install$missing in the chroot"
}

# Host files the chroot needs: the CA bundle (registries are reached through a
# proxy only the host bundle trusts), DNS, and pip config. /etc/xdg/pip holds
# a constraints file that only caps torch; copied so pip resolves the same.
sync_config() {
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
    cp --remove-destination /etc/resolv.conf "$ROOT/etc/resolv.conf"
    [[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
    if [[ -d /etc/xdg/pip ]]; then
        mkdir -p "$ROOT/etc/xdg"
        rm -rf "$ROOT/etc/xdg/pip"
        cp -r /etc/xdg/pip "$ROOT/etc/xdg/pip"
    fi
}

# Environment for commands in the chroot: a clean one, plus pass-through of
# test/Python/pip knobs. PIP_FIND_LINKS and PYTHONPATH/PYTHONHOME name host
# paths, so they are dropped.
build_env() {
    local name path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    if [[ $VERSION == --root ]]; then
        ENVV=("PATH=$path")
    else
        ENVV=("PATH=/opt/venv-$VERSION/bin:$path" "VIRTUAL_ENV=/opt/venv-$VERSION")
    fi
    ENVV+=("HOME=/root" "LANG=${LANG:-C.UTF-8}")
    for name in $(compgen -e); do
        case $name in
            PIP_FIND_LINKS|PYTHONPATH|PYTHONHOME) ;;
            CHILDWATCH_*|PYTEST_*|PYTHON*|PIP_*|TERM|NO_COLOR|FORCE_COLOR|CI|[Hh][Tt][Tt][Pp]*_[Pp][Rr][Oo][Xx][Yy]|[Nn][Oo]_[Pp][Rr][Oo][Xx][Yy])
                ENVV+=("$name=${!name}") ;;
        esac
    done
}

in_chroot() { chroot "$ROOT" /usr/bin/env -i -C /src "${ENVV[@]}" "$@"; }

# ---- main ------------------------------------------------------------------
[[ $# -ge 1 ]] || usage
[[ $EUID -eq 0 ]] || die "must run as root (chroot/mount/debootstrap need it); try: sudo bash $0 $*"

if [[ $1 == --teardown ]]; then
    exec 9>"$LOCK"
    flock 9
    teardown
    log "unmounted everything under $ROOT (chroot kept)"
    exit 0
fi

ARGS=("$@")
VERSION=$1; shift
LOCKED=""
if [[ $VERSION == --root && ${1:-} == --locked ]]; then LOCKED=1; shift; fi
[[ $VERSION == --root || " $VERSIONS $FT_VERSIONS " == *" $VERSION "* ]] \
    || die "unsupported Python version '$VERSION' (supported: $VERSIONS $FT_VERSIONS)"
[[ $# -ge 1 ]] || usage

# Go on in a private mount namespace (see the header); the marker is not
# passed into the chroot (build_env keeps only the names it lists).
if [[ -z ${_SID_SH_PRIVATE_NS:-} ]]; then
    command -v unshare >/dev/null || die "unshare (util-linux) is required"
    _SID_SH_PRIVATE_NS=1 exec unshare --mount --propagation private -- "$BASH" "${BASH_SOURCE[0]}" "${ARGS[@]}"
fi

exec 9>"$LOCK"
flock 9

[[ -f "$STAMP" ]] || provision
sync_config
# The chroot's / a mount point of its own (in this private namespace), so that
# tools that make / private in a new mount namespace (unshare --mount) work in it.
mount_once "$ROOT" --bind "$ROOT"
mount_once "$ROOT/proc" -t proc proc
mount_once "$ROOT/dev" --bind /dev
mount_once "$ROOT/dev/pts" --bind /dev/pts
mount_once "$ROOT/dev/shm" --bind /dev/shm   # POSIX semaphores (multiprocessing)
ensure_packages
# A /src inherited from the host namespace (an older run's, maybe another
# checkout's) is unmounted here only: the host keeps it.
while mountpoint -q "$ROOT/src"; do umount -l "$ROOT/src"; done
mount_once "$ROOT/src" --bind "$REPO"
[[ $(stat -c %d:%i "$ROOT/src") == "$(stat -c %d:%i "$REPO")" ]] || die "could not bind $REPO to $ROOT/src"

if [[ $VERSION == --root ]]; then
    build_env
    # Release the lock unless asked to keep it: CMD (and whatever it leaves running) holds fd 9.
    [[ -n $LOCKED ]] || exec 9>&-
    exec chroot "$ROOT" /usr/bin/env -i -C /src "${ENVV[@]}" "$@"
fi
if [[ $VERSION == *t && ! -x "$ROOT$(interpreter "$VERSION")" ]]; then
    die "no $(interpreter "$VERSION") in the chroot: build it first (bash compat/ft_build.sh ${VERSION%t})"
fi
build_env
VENV="$ROOT/opt/venv-$VERSION"
if [[ ! -f "$VENV/.ready" ]]; then
    log "creating venv /opt/venv-$VERSION"
    rm -rf "$VENV"
    in_chroot "$(interpreter "$VERSION")" -m venv "/opt/venv-$VERSION" >&2
    in_chroot python -m pip install -q --upgrade pip >&2
    touch "$VENV/.ready"
fi
if [[ -n "${CHILDWATCH_SID_PIP:-}" ]]; then
    # Split on whitespace without globbing ("/src[test]" must stay literal).
    read -r -a PIPARGS <<< "$CHILDWATCH_SID_PIP"
    in_chroot python -m pip install "${PIPARGS[@]}" >&2 || die "pip install $CHILDWATCH_SID_PIP failed"
fi

# Release the lock (close fd 9) and replace this shell: CMD's exit status is ours.
exec 9>&-
exec chroot "$ROOT" /usr/bin/env -i -C /src "${ENVV[@]}" "$@"
