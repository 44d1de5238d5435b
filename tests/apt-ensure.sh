#!/usr/bin/env bash
# Make sure Debian packages are installed; the one install step the test setup scripts share.
#   bash tests/apt-ensure.sh NAME PACKAGE...
# NAME prefixes the messages. Nothing is touched when every package is already installed.
# Needs root (or sudo) and apt; waits up to 10 minutes for another apt/dpkg run's lock.
set -euo pipefail

name=${1:?usage: apt-ensure.sh NAME PACKAGE...}
shift
die() {
    echo "$name: ERROR: $*" >&2
    exit 1
}
(($# > 0)) || die "no packages given"
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    die "this is not a Debian-like system (dpkg-query/apt-get missing); install $* by hand"
fi

missing=()
for pkg in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
    echo "$name: all packages present ($*)"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root to install: ${missing[*]}"
    SUDO=(sudo)
fi
echo "$name: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
APT=("${SUDO[@]}" apt-get -o "DPkg::Lock::Timeout=600")
"${APT[@]}" update -qq || die "apt-get update failed"
"${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"
