#!/usr/bin/env bash
# Installs Debian's Prometheus and Pushgateway for tests/prometheus. The packages register
# services, but nothing here needs them running: the tests start their own instances on free
# loopback ports (there is no systemd on the test machines).
set -euo pipefail
here=$(dirname "$0")
bash "$here/../apt-ensure.sh" tests/prometheus prometheus prometheus-pushgateway
command -v prometheus >/dev/null && command -v prometheus-pushgateway >/dev/null || {
    echo "tests/prometheus: ERROR: prometheus or prometheus-pushgateway not on PATH" >&2
    exit 1
}
echo "tests/prometheus: ok ($(prometheus --version 2>&1 | head -n1))"
