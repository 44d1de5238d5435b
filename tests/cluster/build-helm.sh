#!/usr/bin/env bash
# Build helm from source, once, into a cache outside the repo (used by tests/k8s/test_helm_chart.py).
#
#   tests/cluster/build-helm.sh            # build (or reuse) and print the bin dir
#   BIN=$(tests/cluster/build-helm.sh)     # stdout carries only the bin dir (its last line)
#
# The helm version comes from tests/cluster/helm/go.mod (a wrapper module requiring helm.sh/helm/v3).
# Cache: ${CHAOS_TESTBIN_CACHE:-$HOME/.cache/chaos-testbin}/helm-<version>_<platform>_<hash>/bin/helm,
# <hash> covering go.mod/go.sum and the build recipe. The stamp file is written last, so an
# interrupted build is never mistaken for a finished one.
#
# Progress goes to stderr. Exit status is nonzero on any failure.
# Env: CHAOS_TESTBIN_CACHE (cache root), GO (go binary, default: go on PATH),
#      CHAOS_TESTBIN_FORCE=1 (rebuild).

set -euo pipefail

# Bump when the way helm is built changes (flags, ldflags).
BUILD_REV=1

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="tests/cluster/build-helm.sh"

# shellcheck source=tests/cluster/lib.sh
source "$HERE/lib.sh"

need_files helm/go.mod helm/go.sum

HELM_VERSION="$(modver "$HERE/helm/go.mod" helm.sh/helm/v3)"     # e.g. v3.19.5
K8S_LIB_VERSION="$(modver "$HERE/helm/go.mod" k8s.io/client-go)" # e.g. v0.34.2

RECIPE_HASH="$(
    { echo "rev=$BUILD_REV"; cat "$HERE/helm/go.mod" "$HERE/helm/go.sum"; } | short_hash
)"
KEY="helm-${HELM_VERSION}_${PLATFORM}_${RECIPE_HASH}"

DIR="$CACHE_ROOT/$KEY"
BIN="$DIR/bin"
STAMP="$DIR/stamp"

# Fast path: a finished build is present.
if [[ -f "$STAMP" && -x "$BIN/helm" && "${CHAOS_TESTBIN_FORCE:-0}" != 1 ]]; then
    log "cached: $BIN"
    printf '%s\n' "$BIN"
    exit 0
fi

mkdir -p "$BIN" || die "cannot create $BIN"

if lock_build "$DIR" "$KEY"; then
    if [[ -f "$STAMP" && -x "$BIN/helm" && "${CHAOS_TESTBIN_FORCE:-0}" != 1 ]]; then
        log "cached (built by the other process): $BIN"
        printf '%s\n' "$BIN"
        exit 0
    fi
fi
rm -f "$STAMP"

require_go "$BIN" " or set GO=/path/to/go"
log "building $KEY with $GO_VERSION into $BIN (first build: ~100 MB of modules, a few minutes of compiling)"

export CGO_ENABLED=0
GOBUILD=("$GO" build -mod=readonly -trimpath -buildvcs=false)
if nice -n 10 true 2>/dev/null; then GOBUILD=(nice -n 10 "${GOBUILD[@]}"); fi

kv="${K8S_LIB_VERSION#v}" # v0.34.2 -> Kubernetes 1.34 (what "helm template" assumes by default)
K8S_MINOR="${kv#*.}"
K8S_MINOR="${K8S_MINOR%%.*}"
LDFLAGS="-s -w"
LDFLAGS+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
LDFLAGS+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    LDFLAGS+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$K8S_MINOR"
done

CHILD=
on_signal() {
    trap - INT TERM
    if [[ -n "$CHILD" ]]; then kill -TERM "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    rm -f "$BIN/.helm.tmp" "$DIR/stamp.tmp"
    log "interrupted (no stamp written; the next run builds again)"
    exit 130
}
trap on_signal INT TERM

t0=$(date +%s)
log "downloading modules for helm/"
(cd "$HERE/helm" && "$GO" mod download) >&2 ||
    die "could not download the modules for $HERE/helm (GOPROXY=$("$GO" env GOPROXY)); check network access to the Go module proxy"
log "modules ready in $(($(date +%s) - t0))s"

t1=$(date +%s)
log "helm: go build helm.sh/helm/v3/cmd/helm"
(cd "$HERE/helm" && exec "${GOBUILD[@]}" -ldflags "$LDFLAGS" -o "$BIN/.helm.tmp" helm.sh/helm/v3/cmd/helm) >&2 &
CHILD=$!
if ! wait "$CHILD"; then
    CHILD=
    rm -f "$BIN/.helm.tmp"
    die "building helm (helm.sh/helm/v3/cmd/helm in $HERE/helm) failed; see the go output above"
fi
CHILD=
mv -f "$BIN/.helm.tmp" "$BIN/helm"
T_BUILD=$(($(date +%s) - t1))

"$BIN/helm" version --short >&2 || die "the built helm does not run"

{
    echo "key=$KEY"
    echo "helm=$HELM_VERSION"
    echo "k8s-libs=$K8S_LIB_VERSION"
    echo "go=$GO_VERSION"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "time.helm: ${T_BUILD}s"
} >"$DIR/stamp.tmp"
mv -f "$DIR/stamp.tmp" "$STAMP" # written last: only now is the build reusable

log "helm built in ${T_BUILD}s"
printf '%s\n' "$BIN"
