#!/usr/bin/env bash
# Install the Debian packages the netem guest harness (tests/guest/guest.py) needs.
# Idempotent: packages already installed are skipped; apt is only touched when
# something is missing.  Needs root (or sudo) and Debian/Ubuntu apt.
#
#   user-mode-linux  UML kernel /usr/bin/linux.uml + modules (sch_netem.ko, veth.ko)
#   kmod             modprobe, used inside the guest to load those modules
#   iproute2         tc / ip (run inside the guest from the host filesystem)
#   util-linux       mount, unshare, mountpoint (essential; listed for clarity)
#   gcc, libc6-dev   build the tiny LD_PRELOAD ptrace shim (see guest.py)
set -euo pipefail

PACKAGES=(user-mode-linux kmod iproute2 util-linux gcc libc6-dev)

die() {
    echo "tests/guest/setup.sh: ERROR: $*" >&2
    exit 1
}

bash "$(dirname "$0")/../apt-ensure.sh" tests/guest/setup.sh "${PACKAGES[@]}"

# Post-conditions the harness relies on.
[[ -x /usr/bin/linux.uml ]] || die "/usr/bin/linux.uml missing after install"
compgen -G "/usr/lib/uml/modules/*/kernel/net/sched/sch_netem.ko*" >/dev/null \
    || die "sch_netem.ko not found under /usr/lib/uml/modules (user-mode-linux package changed?)"
for tool in modprobe tc ip gcc unshare mount; do
    PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v "$tool" >/dev/null 2>&1 \
        || die "'$tool' missing after install"
done
echo "tests/guest/setup.sh: ok"
