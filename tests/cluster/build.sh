#!/usr/bin/env bash
# Build the test Kubernetes control plane from source, once, into a cache outside the repo.
#
#   tests/cluster/build.sh            # build (or reuse) and print the bin dir
#   BIN=$(tests/cluster/build.sh)     # stdout carries only the bin dir (its last line)
#
# What it builds (versions come from the go.mod files next to this script):
#   k8s/   kube-apiserver kube-controller-manager kube-scheduler kubectl  (k8s.io/kubernetes)
#   etcd/  etcd                                                          (go.etcd.io/etcd/server/v3)
#   kwok/  kwok kwokctl                                                  (sigs.k8s.io/kwok)
#
# Cache: ${CHAOS_TESTBIN_CACHE:-$HOME/.cache/chaos-testbin}/<key>/bin, where <key> names the
# versions plus a hash of the go.mod/go.sum files and of the build recipe below. A build is only
# reused when its stamp file exists; the stamp is written last, so an interrupted build is resumed
# (finished binaries are kept, each is moved into place atomically) and never mistaken for done.
#
# Progress and timings go to stderr. Exit status is nonzero on any failure.
# Needs: Go (see the go directives in */go.mod) and a reachable Go module proxy on the first run.
# Env: CHAOS_TESTBIN_CACHE (cache root), GO (go binary, default: go on PATH),
#      KUBE_GIT_COMMIT (optional, stamped into /version as gitCommit), CHAOS_TESTBIN_FORCE=1 (rebuild).

set -euo pipefail

# Bump when the way binaries are built changes (flags, ldflags, list of binaries).
BUILD_REV=1

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="tests/cluster/build.sh"

# shellcheck source=tests/cluster/lib.sh
source "$HERE/lib.sh"

need_files k8s/go.mod k8s/go.sum etcd/go.mod etcd/go.sum kwok/go.mod kwok/go.sum

K8S_VERSION="$(modver "$HERE/k8s/go.mod" k8s.io/kubernetes)"     # e.g. v1.34.4
ETCD_VERSION="$(modver "$HERE/etcd/go.mod" go.etcd.io/etcd/server/v3)"
KWOK_VERSION="$(modver "$HERE/kwok/go.mod" sigs.k8s.io/kwok)"

RECIPE_HASH="$(
    {
        echo "rev=$BUILD_REV"
        cat "$HERE"/k8s/go.mod "$HERE"/k8s/go.sum "$HERE"/etcd/go.mod "$HERE"/etcd/go.sum \
            "$HERE"/kwok/go.mod "$HERE"/kwok/go.sum
    } | short_hash
)"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_${PLATFORM}_${RECIPE_HASH}"

DIR="$CACHE_ROOT/$KEY"
BIN="$DIR/bin"
STAMP="$DIR/stamp"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl)

# Fast path: a finished build is present.
if [[ -f "$STAMP" && "${CHAOS_TESTBIN_FORCE:-0}" != 1 ]]; then
    ok=1
    for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || ok=0; done
    if [[ $ok == 1 ]]; then
        log "cached: $BIN"
        printf '%s\n' "$BIN"
        exit 0
    fi
    log "stamp present but binaries missing in $BIN; rebuilding"
fi

mkdir -p "$BIN" || die "cannot create $BIN"

if lock_build "$DIR" "$KEY"; then
    if [[ -f "$STAMP" && "${CHAOS_TESTBIN_FORCE:-0}" != 1 ]]; then
        log "cached (built by the other process): $BIN"
        printf '%s\n' "$BIN"
        exit 0
    fi
fi
if [[ "${CHAOS_TESTBIN_FORCE:-0}" == 1 ]]; then
    rm -f "$STAMP" "${BINARIES[@]/#/$BIN/}"
fi

require_go "$BIN" "; an older Go >= 1.21 also works with GOTOOLCHAIN=auto,\nwhich fetches Go 1.26 through the module proxy"
log "building $KEY with $GO_VERSION into $BIN"
log "(first build: fetches ~250 MB of modules through \$GOPROXY, 1.3 GB unpacked, then compiles"
log " for ~15 min on 2 cores, needing ~2 GB RAM and ~4 GB of Go build cache)"

# Build flags shared by every binary. -mod=readonly: go.sum is committed; nothing is resolved anew.
# -buildvcs=false: the wrapper modules live inside this repo; its git state must not leak in.
export CGO_ENABLED=0
GOBUILD=("$GO" build -mod=readonly -trimpath -buildvcs=false)
if nice -n 10 true 2>/dev/null; then GOBUILD=(nice -n 10 "${GOBUILD[@]}"); fi

k8s_ldflags "$K8S_VERSION" # sets K8S_LDFLAGS and BUILD_DATE (lib.sh)
ETCD_LDFLAGS="-s -w"
KWOK_LDFLAGS="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
# Default Kubernetes version kwokctl assumes for the binaries it runs: ours.
KWOK_LDFLAGS+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}"

CHILD=
on_signal() {
    trap - INT TERM
    if [[ -n "$CHILD" ]]; then kill -TERM "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    rm -f "$BIN"/.*.tmp "$DIR/stamp.tmp"
    log "interrupted; finished binaries are kept and the next run resumes (no stamp written)"
    exit 130
}
trap on_signal INT TERM

TIMINGS=()
build_one() { # <name> <module dir> <ldflags> <package>
    local name="$1" moddir="$2" ldflags="$3" pkg="$4" t0 t1
    if [[ -x "$BIN/$name" ]]; then
        log "$name: already built (resuming an interrupted build)"
        TIMINGS+=("$name: reused")
        return 0
    fi
    log "$name: go build $pkg"
    t0=$(date +%s)
    # In the background + wait, so that the INT/TERM trap below runs at once and stops go too.
    (cd "$HERE/$moddir" && exec "${GOBUILD[@]}" -ldflags "$ldflags" -o "$BIN/.$name.tmp" "$pkg") &
    CHILD=$!
    if ! wait "$CHILD"; then
        CHILD=
        rm -f "$BIN/.$name.tmp"
        die "building $name ($pkg in $HERE/$moddir) failed; see the go output above"
    fi
    CHILD=
    mv -f "$BIN/.$name.tmp" "$BIN/$name"
    t1=$(date +%s)
    log "$name: built in $((t1 - t0))s"
    TIMINGS+=("$name: $((t1 - t0))s")
}

# Fetch modules first so a network problem reads as one, not as a compile error.
for m in k8s etcd kwok; do
    t0=$(date +%s)
    log "downloading modules for $m/"
    (cd "$HERE/$m" && "$GO" mod download) >&2 ||
        die "could not download the modules for $HERE/$m (GOPROXY=$("$GO" env GOPROXY)); check network access to the Go module proxy"
    log "modules for $m/ ready in $(($(date +%s) - t0))s"
done

T_START=$(date +%s)
build_one etcd etcd "$ETCD_LDFLAGS" go.etcd.io/etcd/server/v3
build_one kwok kwok "$KWOK_LDFLAGS" sigs.k8s.io/kwok/cmd/kwok
build_one kwokctl kwok "$KWOK_LDFLAGS" sigs.k8s.io/kwok/cmd/kwokctl
build_one kube-apiserver k8s "$K8S_LDFLAGS" k8s.io/kubernetes/cmd/kube-apiserver
build_one kube-controller-manager k8s "$K8S_LDFLAGS" k8s.io/kubernetes/cmd/kube-controller-manager
build_one kube-scheduler k8s "$K8S_LDFLAGS" k8s.io/kubernetes/cmd/kube-scheduler
build_one kubectl k8s "$K8S_LDFLAGS" k8s.io/kubernetes/cmd/kubectl
T_TOTAL=$(($(date +%s) - T_START))

# Sanity check before declaring the build good.
"$BIN/kube-apiserver" --version >&2 || die "the built kube-apiserver does not run"
"$BIN/etcd" --version >&2 || die "the built etcd does not run"
"$BIN/kwokctl" --version >&2 || die "the built kwokctl does not run"

{
    echo "key=$KEY"
    echo "kubernetes=$K8S_VERSION"
    echo "etcd=$ETCD_VERSION"
    echo "kwok=$KWOK_VERSION"
    echo "go=$GO_VERSION"
    echo "built=$BUILD_DATE"
    for t in "${TIMINGS[@]}"; do echo "time.$t"; done
    echo "time.total: ${T_TOTAL}s"
} >"$DIR/stamp.tmp"
mv -f "$DIR/stamp.tmp" "$STAMP" # written last: only now is the build reusable

log "build times:"
for t in "${TIMINGS[@]}"; do log "  $t"; done
log "  total: ${T_TOTAL}s"
printf '%s\n' "$BIN"
