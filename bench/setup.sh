#!/usr/bin/env bash
# Installs the peers the benchmarks compare against, outside the repository and never into the
# project's own virtualenv, and prints their paths as shell assignments (bench/run evals them):
#   Chaos Toolkit (+ addons for the safeguards control, + kubernetes) from PyPI in its own venv;
#   Toxiproxy built from source through the Go module proxy;
#   bench/loadgen (our constant-rate HTTP load generator) built with Go.
# Everything is keyed by version under $CHAOS_BENCH_CACHE, so a second run is a no-op.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${CHAOS_BENCH_CACHE:-$HOME/.cache/chaos-bench}"
CTK_PINS="chaostoolkit==1.19.0 chaostoolkit-lib==1.44.0 chaostoolkit-addons==0.11.0 chaostoolkit-kubernetes==0.39.0"
TOXIPROXY_VERSION="v2.12.0"
mkdir -p "$CACHE"

ctk_key="$(echo "$CTK_PINS" | sha256sum | cut -c1-12)"
CTK_VENV="$CACHE/ctk-$ctk_key"
if [ ! -f "$CTK_VENV/.complete" ]; then
  echo "bench: installing Chaos Toolkit into $CTK_VENV" >&2
  rm -rf "$CTK_VENV"
  python3 -m venv "$CTK_VENV"
  # shellcheck disable=SC2086
  "$CTK_VENV/bin/python" -m pip install -q --disable-pip-version-check $CTK_PINS >&2
  touch "$CTK_VENV/.complete"
fi

TOXI_DIR="$CACHE/toxiproxy-$TOXIPROXY_VERSION"
if [ ! -x "$TOXI_DIR/bin/toxiproxy-server" ]; then
  echo "bench: building Toxiproxy $TOXIPROXY_VERSION from source (Go module proxy)" >&2
  t0=$(date +%s)
  GOBIN="$TOXI_DIR/bin.tmp" CGO_ENABLED=0 go install -trimpath \
    "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >&2
  mv "$TOXI_DIR/bin.tmp/server" "$TOXI_DIR/bin.tmp/toxiproxy-server"
  rm -rf "$TOXI_DIR/bin" && mv "$TOXI_DIR/bin.tmp" "$TOXI_DIR/bin"
  echo "bench: Toxiproxy built in $(( $(date +%s) - t0 ))s" >&2
fi

LOADGEN_KEY="$(cat "$ROOT"/bench/loadgen/go.mod "$ROOT"/bench/loadgen/*.go | sha256sum | cut -c1-12)"
LOADGEN="$CACHE/loadgen-$LOADGEN_KEY/loadgen"
if [ ! -x "$LOADGEN" ]; then
  echo "bench: building bench/loadgen" >&2
  mkdir -p "$(dirname "$LOADGEN")"
  (cd "$ROOT/bench/loadgen" && CGO_ENABLED=0 go build -trimpath -o "$LOADGEN.tmp" .) >&2
  mv "$LOADGEN.tmp" "$LOADGEN"
fi

echo "CTK_VENV=$CTK_VENV"
echo "TOXIPROXY=$TOXI_DIR/bin/toxiproxy-server"
echo "LOADGEN=$LOADGEN"
