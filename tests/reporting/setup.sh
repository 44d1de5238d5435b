#!/usr/bin/env bash
# Install headless Chromium for the HTML report test (tests/reporting/test_browser.py).
#   chromium   the browser, run with --headless to screenshot the report and dump its DOM
set -euo pipefail
here=$(dirname "$0")
bash "$here/../apt-ensure.sh" tests/reporting/setup.sh chromium

# Post-condition the test relies on.
command -v chromium >/dev/null 2>&1 || {
    echo "tests/reporting/setup.sh: ERROR: 'chromium' not on PATH after install" >&2
    exit 1
}
echo "tests/reporting/setup.sh: ok ($(chromium --version 2>/dev/null || echo 'version unknown'))"
