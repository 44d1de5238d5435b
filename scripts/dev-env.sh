# Sourced by scripts/demo, scripts/test and bench/run: this checkout's own virtualenv (.venv in
# the repository root, ignored by git) with the project installed editable and its dev tools.
# One virtualenv per checkout: two checkouts on one machine never re-point each other's install.
# Re-running is cheap: pip skips what is installed.
set -euo pipefail
CHAOS_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHAOS_VENV="${CHAOS_VENV:-$CHAOS_REPO/.venv}"
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: python3 >= 3.11 is needed (found: $(python3 --version 2>&1))" >&2
  exit 2
fi
if [ ! -x "$CHAOS_VENV/bin/python" ]; then
  echo "setting up a virtualenv in $CHAOS_VENV" >&2
  python3 -m venv "$CHAOS_VENV"
  "$CHAOS_VENV/bin/python" -m pip install -q --upgrade pip >&2
fi
extras="${CHAOS_EXTRAS:-}"
"$CHAOS_VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$CHAOS_REPO${extras:+[$extras]}" >&2
export PATH="$CHAOS_VENV/bin:$PATH"
