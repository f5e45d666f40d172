#!/usr/bin/env bash
# Build free-threaded CPython (./configure --disable-gil) in compat/sid.sh's Debian sid chroot,
# from Debian's source package of that CPython, or restore the build cached on this machine.
#
#   bash compat/ft_build.sh 3.13 [3.14 3.15 ...]
#
# For each X.Y it takes the newest pythonX.Y source version that Debian (sid, forky, trixie)
# lists and whose files download, configures the upstream tarball of that source package with
# --disable-gil (no PGO or LTO: minutes rather than an hour on two cores) and --enable-shared (as
# Debian's: wheels such as talyn's link to libpython3.Yt.so; an rpath finds it), and installs it in
# /opt/pyXYt in the chroot: `bash compat/sid.sh X.Yt CMD` then runs CMD with it (venv
# /opt/venv-X.Yt).  The installed prefix (its test package included: compat/cpython_suite.py
# needs it) is cached as a zstd tarball on the host, keyed by the Debian source version, the
# prefix and the configure line; a later run with the same key keeps the prefix that is there
# or restores the tarball, in seconds.
#
# One line per X.Y on stdout (the rest goes to stderr):
#   X.Yt ok: VERSION from pythonX.Y SOURCE-VERSION at INTERPRETER; HOW
#                                  built, restored or kept; the GIL checked off
#   X.Yt no-source: REASON         Debian lists no source, or its archive answers 404 for each
#   X.Yt failed: REASON
# Exit status 0 if every X.Y is ok or has no source, else 1.
#
# Apt reads the deb-src lines with a state dir of its own (other jobs' apt runs in the chroot
# never see them); the build dependencies are installed under the chroot's lock (sid.sh
# --root --locked), waiting for dpkg's lock as well.
#
# Env: CHILDWATCH_SID_ROOT  the chroot (as for compat/sid.sh; default /var/tmp/childwatch-sid)
#      CHILDWATCH_FT_CACHE  host dir of the cached builds (default /var/tmp/childwatch-ft-cache)
#      CHILDWATCH_FT_JOBS   make -j (default: the number of CPUs)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=${CHILDWATCH_SID_ROOT:-/var/tmp/childwatch-sid}
ROOT=${ROOT%/}
CACHE=${CHILDWATCH_FT_CACHE:-/var/tmp/childwatch-ft-cache}
JOBS=${CHILDWATCH_FT_JOBS:-$(nproc)}
WORK=/srv/childwatch-ft   # in the chroot: apt's source state, downloads, build trees
STAMP=.childwatch-ft-build # in the prefix: the key it was built for
SUITES="sid forky trixie"
BUILD_DEPS="build-essential pkg-config xz-utils libssl-dev libffi-dev zlib1g-dev libbz2-dev
 liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev libgdbm-dev uuid-dev libzstd-dev
 libexpat1-dev libmpdec-dev"
APT="-q -o Dir::Etc::SourceList=$WORK/apt/sources.list -o Dir::Etc::SourceParts=$WORK/apt/parts
 -o Dir::State::Lists=$WORK/apt/lists -o Dir::Cache=$WORK/apt/cache
 -o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root"
APT=${APT//$'\n'/}

log() { echo "ft_build: $*" >&2; }
in_sid() { bash "$HERE/sid.sh" --root "$@"; }
result() { echo "$*"; }

[[ $# -ge 1 ]] || { echo "usage: bash compat/ft_build.sh X.Y [X.Y ...]" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { log "must run as root (compat/sid.sh needs it)"; exit 1; }

# One build at a time per chroot (checkouts sharing it share /opt/pyXYt).
mkdir -p "$CACHE"
exec 8>"$ROOT.ft.lock"
flock 8

# The chroot (sid.sh provisions it if needed), and deb-src lines on the mirror it uses.
in_sid true
mirror=$(awk '$1 == "deb" { print $2; exit }' "$ROOT/etc/apt/sources.list" 2>/dev/null)
mkdir -p "$ROOT$WORK/apt/parts" "$ROOT$WORK/apt/lists/partial" "$ROOT$WORK/apt/cache/archives/partial"
for suite in $SUITES; do echo "deb-src ${mirror:-http://deb.debian.org/debian} $suite main"; done \
    > "$ROOT$WORK/apt/sources.list"
# shellcheck disable=SC2086  # $APT: options, split on purpose
in_sid apt-get $APT update >&2 || { log "apt-get update (deb-src) failed"; exit 1; }

missing_deps() {
    local p
    for p in $BUILD_DEPS zstd; do
        [[ -f "$ROOT/var/lib/dpkg/info/$p.list" || -f "$ROOT/var/lib/dpkg/info/$p:amd64.list" ]] || echo "$p"
    done
}

ensure_deps() {
    local missing
    missing=$(missing_deps | tr '\n' ' ')
    [[ -z $missing ]] && return 0
    log "installing the build dependencies in the chroot: $missing"
    in_sid --locked env DEBIAN_FRONTEND=noninteractive sh -c "
        apt-get -q -o Acquire::Check-Valid-Until=false -o DPkg::Lock::Timeout=900 update &&
        apt-get -q -o DPkg::Lock::Timeout=900 install -y --no-install-recommends $missing" >&2
}

# The interpreter's version if it runs free-threaded with the GIL off and has the test
# package compat/cpython_suite.py loads; nothing (and status 1) otherwise.
check() {
    in_sid "$1" -c "
import platform, sys, sysconfig
import test.test_asyncio.test_subprocess
assert sysconfig.get_config_var('Py_GIL_DISABLED') == 1, 'not a --disable-gil build'
assert not sys._is_gil_enabled(), 'the GIL is enabled'
print(platform.python_version())"
}

# Pack the prefix into the cache (the .opt-1/.opt-2 bytecode left out: nothing runs with -O).
cache() {
    local prefix=$1 tarball=$2 t0=$SECONDS
    if ! tar -C "$ROOT$prefix" --exclude='*.opt-1.pyc' --exclude='*.opt-2.pyc' -cf - . \
            | zstd -q -T"$JOBS" -10 -o "$tarball.tmp.$$"; then
        rm -f "$tarball.tmp.$$"; log "could not cache $prefix in $tarball"; return 0
    fi
    mv "$tarball.tmp.$$" "$tarball"
    echo ", cached in $((SECONDS - t0)) s ($(du -h "$tarball" | cut -f1) $tarball)"
}

restore() {
    local prefix=$1 tarball=$2
    rm -rf "${ROOT:?}$prefix" && mkdir -p "$ROOT$prefix" && zstd -q -dc "$tarball" | tar -x -C "$ROOT$prefix"
}

build() {  # VER SOURCE-VERSION PREFIX CONFIGURE: prints how it went
    local ver=$1 v=$2 prefix=$3 configure=$4 upstream tree phases="" step cmd t0
    upstream=${v#*:}; upstream=${upstream%-*}
    tree=$WORK/build-$ver
    in_sid sh -c "rm -rf $tree && mkdir -p $tree &&
        tar -xf $WORK/src-$ver/python${ver}_$upstream.orig.tar.* -C $tree --strip-components=1" >&2 || return 1
    for step in configure make install; do
        t0=$SECONDS
        case $step in
            configure) cmd="$configure" ;;
            make) cmd="make -j$JOBS" ;;
            install) cmd="rm -rf $prefix && make install" ;;
        esac
        log "$ver: $step ($cmd)"
        if ! in_sid sh -c "cd $tree && ($cmd) > $step.log 2>&1"; then
            log "$ver: $step failed; the end of $ROOT$tree/$step.log:"
            tail -n 25 "$ROOT$tree/$step.log" >&2
            return 1
        fi
        phases+=" $step $((SECONDS - t0)) s,"
    done
    # What no venv needs: the static libpython, debug info (bin/python$ver is a hard link
    # of bin/python${ver}t: stripping makes a new file, so it is linked again).
    in_sid sh -c "find $prefix -name 'libpython*.a' -delete &&
        find $prefix -name '*.so*' -type f -exec strip --strip-debug {} + &&
        strip --strip-debug $prefix/bin/python${ver}t &&
        if [ -f $prefix/bin/python$ver ]; then ln -f $prefix/bin/python${ver}t $prefix/bin/python$ver; fi &&
        rm -rf $tree" >&2 || return 1
    echo "built:${phases%,}"
}

# ---- main ------------------------------------------------------------------
status=0
for VER in "$@"; do
    FT=${VER}t
    PREFIX=/opt/py${VER//./}t
    PY=$PREFIX/bin/python$FT
    CONFIGURE="./configure --disable-gil --enable-shared --prefix=$PREFIX --with-ensurepip=no LDFLAGS=-Wl,-rpath,$PREFIX/lib"
    recipe=$(cksum <<< "$CONFIGURE" | cut -d' ' -f1)
    # shellcheck disable=SC2086
    listed=$(in_sid apt-cache $APT showsrc --only-source "python$VER" 2>/dev/null \
        | sed -n 's/^Version: //p' | sort -Vru | tr '\n' ' ')
    if [[ -z $listed ]]; then
        result "$FT no-source: Debian lists no python$VER source ($SUITES)"
        continue
    fi
    t0=$SECONDS got="" how="" gone="" error=""
    for v in $listed; do
        key=py${VER//./}t_${v//:/%}_${PREFIX//\//_}_$recipe
        tarball=$CACHE/$key.tar.zst
        if [[ $(cat "$ROOT$PREFIX/$STAMP" 2>/dev/null) == "$key" ]] && check "$PY" >/dev/null; then
            got=$v how="kept the build in $PREFIX"; break
        fi
        if [[ -s $tarball ]]; then
            ensure_deps || { error="installing the build dependencies failed"; break; }
            log "$FT: restoring $tarball"
            restore "$PREFIX" "$tarball" || { error="could not unpack $tarball"; break; }
            got=$v how="restored $tarball in $((SECONDS - t0)) s"
            rm -rf "${ROOT:?}/opt/venv-$FT"   # a venv of an older build
            break
        fi
        # shellcheck disable=SC2086
        if out=$(in_sid sh -c "rm -rf $WORK/src-$VER && mkdir -p $WORK/src-$VER && cd $WORK/src-$VER &&
                 apt-get $APT source --download-only python$VER=$v" 2>&1); then
            ensure_deps || { error="installing the build dependencies failed"; break; }
            how=$(build "$VER" "$v" "$PREFIX" "$CONFIGURE") || { error="the build of $v failed (see above)"; break; }
            echo "$key" > "$ROOT$PREFIX/$STAMP"
            rm -rf "${ROOT:?}/opt/venv-$FT"
            got=$v how="$how$(cache "$PREFIX" "$tarball")"
            break
        fi
        if grep -q ' 404 ' <<< "$out"; then
            log "$FT: python$VER $v: the archive answers 404"
            gone+=" $v"
            continue
        fi
        error="downloading python$VER $v failed: $(grep -m1 '^E:' <<< "$out" || tail -n1 <<< "$out")"
        break
    done
    if [[ -n $error ]]; then
        result "$FT failed: $error"; status=1
    elif [[ -z $got ]]; then
        gone=${gone# }
        result "$FT no-source: Debian's archive answers 404 (python$VER ${gone// /, } listed)"
    elif version=$(check "$PY"); then
        result "$FT ok: $version from python$VER $got at $PY; $how"
    else
        result "$FT failed: $PY does not run free-threaded with the GIL off (the check above says why)"
        status=1
    fi
done
exit $status
