# Sourced by scripts/demo and scripts/test: a virtualenv outside the repository with the project
# installed (editable) and its dev tools. Re-running is cheap: pip skips what is installed.
set -euo pipefail
CHAOS_CACHE="${CHAOS_CACHE:-$HOME/.cache/chaos-runner}"
CHAOS_VENV="${CHAOS_VENV:-$CHAOS_CACHE/venv}"
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
"$CHAOS_VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" >&2
export PATH="$CHAOS_VENV/bin:$PATH"
