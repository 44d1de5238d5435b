#!/bin/sh
# Installs Debian's Prometheus and Pushgateway for tests/prometheus; does nothing when both are
# already there. The packages register services, but nothing here needs them running: the tests
# start their own instances on free loopback ports (there is no systemd on the test machines).
set -eu

missing=""
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
command -v prometheus-pushgateway >/dev/null 2>&1 || missing="$missing prometheus-pushgateway"
if [ -z "$missing" ]; then
    echo "tests/prometheus: prometheus and prometheus-pushgateway already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
echo "tests/prometheus: installing$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
command -v prometheus >/dev/null && command -v prometheus-pushgateway >/dev/null
echo "tests/prometheus: installed $(prometheus --version 2>&1 | head -n1)"
