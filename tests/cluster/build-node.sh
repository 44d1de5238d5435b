#!/usr/bin/env bash
# Build the real test node's Kubernetes binaries (kubelet, kube-proxy) from source, once, into a
# cache outside the repo. Same k8s.io/kubernetes module and version as the control plane that
# build.sh makes (tests/cluster/node/go.mod mirrors tests/cluster/k8s/go.mod; a test keeps the
# two versions equal). The container runtime and the CNI plugins come from Debian's packages
# (tests/cluster/realnode.py installs and checks them).
#
#   tests/cluster/build-node.sh            # build (or reuse) and print the bin dir
#   BIN=$(tests/cluster/build-node.sh)     # stdout carries only the bin dir (its last line)
#
# Cache: ${CHAOS_TESTBIN_CACHE:-$HOME/.cache/chaos-testbin}/node-<version>_<platform>_<hash>/bin,
# <hash> covering go.mod/go.sum and the build recipe. The stamp file is written last, so an
# interrupted build is never mistaken for a finished one.
#
# Progress goes to stderr. Exit status is nonzero on any failure.
# Env: CHAOS_TESTBIN_CACHE (cache root), GO (go binary, default: go on PATH),
#      KUBE_GIT_COMMIT (optional), CHAOS_TESTBIN_FORCE=1 (rebuild).

set -euo pipefail

# Bump when the way the binaries are built changes (flags, ldflags, list of binaries).
BUILD_REV=1

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="tests/cluster/build-node.sh"

# shellcheck source=tests/cluster/lib.sh
source "$HERE/lib.sh"

need_files node/go.mod node/go.sum k8s/go.mod

K8S_VERSION="$(modver "$HERE/node/go.mod" k8s.io/kubernetes)"
CP_VERSION="$(modver "$HERE/k8s/go.mod" k8s.io/kubernetes)"
[[ "$K8S_VERSION" == "$CP_VERSION" ]] ||
    die "node/go.mod has k8s.io/kubernetes $K8S_VERSION but the control plane (k8s/go.mod) has $CP_VERSION; keep them equal"

RECIPE_HASH="$(
    { echo "rev=$BUILD_REV"; cat "$HERE/node/go.mod" "$HERE/node/go.sum"; } | short_hash
)"
KEY="node-${K8S_VERSION}_${PLATFORM}_${RECIPE_HASH}"

DIR="$CACHE_ROOT/$KEY"
BIN="$DIR/bin"
STAMP="$DIR/stamp"
BINARIES=(kubelet kube-proxy)

have_all() { local b; for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done; }

if [[ -f "$STAMP" && "${CHAOS_TESTBIN_FORCE:-0}" != 1 ]] && have_all; then
    log "cached: $BIN"
    printf '%s\n' "$BIN"
    exit 0
fi

mkdir -p "$BIN" || die "cannot create $BIN"

if lock_build "$DIR" "$KEY"; then
    if [[ -f "$STAMP" && "${CHAOS_TESTBIN_FORCE:-0}" != 1 ]] && have_all; then
        log "cached (built by the other process): $BIN"
        printf '%s\n' "$BIN"
        exit 0
    fi
fi
rm -f "$STAMP"
if [[ "${CHAOS_TESTBIN_FORCE:-0}" == 1 ]]; then rm -f "${BINARIES[@]/#/$BIN/}"; fi

require_go "$BIN" " or set GO=/path/to/go"
log "building $KEY with $GO_VERSION into $BIN"
log "(first build: shares most modules with build.sh; ~5 min of compiling on 2 cores when build.sh ran first)"

export CGO_ENABLED=0
GOBUILD=("$GO" build -mod=readonly -trimpath -buildvcs=false)
if nice -n 10 true 2>/dev/null; then GOBUILD=(nice -n 10 "${GOBUILD[@]}"); fi

k8s_ldflags "$K8S_VERSION" # sets K8S_LDFLAGS and BUILD_DATE (lib.sh)

CHILD=
on_signal() {
    trap - INT TERM
    if [[ -n "$CHILD" ]]; then kill -TERM "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    rm -f "$BIN"/.*.tmp "$DIR/stamp.tmp"
    log "interrupted (no stamp written; the next run resumes)"
    exit 130
}
trap on_signal INT TERM

t0=$(date +%s)
log "downloading modules for node/"
(cd "$HERE/node" && "$GO" mod download) >&2 ||
    die "could not download the modules for $HERE/node (GOPROXY=$("$GO" env GOPROXY)); check network access to the Go module proxy"
log "modules ready in $(($(date +%s) - t0))s"

TIMINGS=()
T_START=$(date +%s)
for name in "${BINARIES[@]}"; do
    if [[ -x "$BIN/$name" ]]; then TIMINGS+=("$name: reused"); continue; fi
    t1=$(date +%s)
    log "$name: go build k8s.io/kubernetes/cmd/$name"
    (cd "$HERE/node" && exec "${GOBUILD[@]}" -ldflags "$K8S_LDFLAGS" -o "$BIN/.$name.tmp" "k8s.io/kubernetes/cmd/$name") >&2 &
    CHILD=$!
    if ! wait "$CHILD"; then
        CHILD=
        rm -f "$BIN/.$name.tmp"
        die "building $name (k8s.io/kubernetes/cmd/$name in $HERE/node) failed; see the go output above"
    fi
    CHILD=
    mv -f "$BIN/.$name.tmp" "$BIN/$name"
    TIMINGS+=("$name: $(($(date +%s) - t1))s")
    log "$name: built in $(($(date +%s) - t1))s"
done
T_TOTAL=$(($(date +%s) - T_START))

"$BIN/kubelet" --version >&2 || die "the built kubelet does not run"
"$BIN/kube-proxy" --version >&2 || die "the built kube-proxy does not run"

{
    echo "key=$KEY"
    echo "kubernetes=$K8S_VERSION"
    echo "go=$GO_VERSION"
    echo "built=$BUILD_DATE"
    for t in "${TIMINGS[@]}"; do echo "time.$t"; done
    echo "time.total: ${T_TOTAL}s"
} >"$DIR/stamp.tmp"
mv -f "$DIR/stamp.tmp" "$STAMP"

log "build times: ${TIMINGS[*]} (total ${T_TOTAL}s)"
printf '%s\n' "$BIN"
