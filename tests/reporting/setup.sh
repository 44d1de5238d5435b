#!/usr/bin/env bash
# Install headless Chromium for the HTML report test (tests/reporting/test_browser.py).
# Idempotent: nothing is touched when chromium is already installed.  Needs root (or sudo) and
# Debian/Ubuntu apt.  Waits up to 10 minutes for another apt/dpkg run to release its lock.
#
#   chromium   the browser, run with --headless to screenshot the report and dump its DOM
set -euo pipefail

PACKAGES=(chromium)
LOCK_WAIT=600

die() {
    echo "tests/reporting/setup.sh: ERROR: $*" >&2
    exit 1
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    die "this is not a Debian-like system (dpkg-query/apt-get missing); install ${PACKAGES[*]} by hand"
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "tests/reporting/setup.sh: all packages present (${PACKAGES[*]})"
else
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root to install: ${missing[*]}"
        SUDO=(sudo)
    fi
    echo "tests/reporting/setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    APT=("${SUDO[@]}" apt-get -o "DPkg::Lock::Timeout=$LOCK_WAIT")
    "${APT[@]}" update -qq || die "apt-get update failed"
    "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
fi

# Post-condition the test relies on.
command -v chromium >/dev/null 2>&1 || die "'chromium' not on PATH after install"
echo "tests/reporting/setup.sh: ok ($(chromium --version 2>/dev/null || echo 'version unknown'))"
