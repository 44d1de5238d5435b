#!/usr/bin/env bash
# Build the OCI images a real test node runs, without Docker and without a registry, into a
# cache outside the repo (used by tests/images and by whoever imports them into containerd).
#
#   tests/cluster/build-images.sh           # build (or reuse) and print the output dir
#   DIR=$(tests/cluster/build-images.sh)    # stdout carries only that dir (its last line)
#   ctr -n k8s.io images import "$DIR/helper.tar"
#
# Images (docker/*.Dockerfile are read by tests/cluster/images/build.py, see its docstring):
#   chaos.test/pause:3.10      pause.tar     k8s.io/kubernetes build/pause, static, gcc
#   chaos.test/helper:dev      helper.tar    docker/helper.Dockerfile, mmdebstrap
#   chaos.test/runner:dev      runner.tar    docker/runner.Dockerfile, mmdebstrap + pip
#   chaos.test/demo-app:dev    demo-app.tar  docker/demo-app.Dockerfile, go build
#
# Cache: ${CHAOS_TESTBIN_CACHE:-$HOME/.cache/chaos-testbin}/
#   images-<hash>/{pause,helper,runner,demo-app}.tar, images.json, stamp   <- printed
#   images-parts/<image>-<hash>/<image>.tar, <image>.json, stamp           (one per image)
#   images-parts/runner-base-<hash>/layer.tar.gz                           (Debian + python3)
# Each <hash> covers that image's inputs (Dockerfile, recipe files, sources, tool versions)
# and BUILD_REV; the top-level <hash> covers the four image hashes. A change to chaos/ rebuilds
# only the runner image, and not its Debian base layer. Stamps are written last; each key has
# a flock lock; older entries are pruned (see "pruning" below).
#
# Needs: root, mmdebstrap, python3 >= 3.11 with pip, gcc + static libc (libc6-dev), Go;
# network access to deb.debian.org and PyPI (and the Go module proxy if k8s.io/kubernetes
# is not in the module cache yet). Exit 3: a prerequisite is missing; other nonzero: failed.
# Env: CHAOS_TESTBIN_CACHE, CHAOS_TESTBIN_FORCE=1 (rebuild all), PYTHON (default python3),
#      GO, CC, CHAOS_DEBIAN_MIRROR, CHAOS_DEBIAN_SECURITY_MIRROR, PIP_INDEX_URL.

set -euo pipefail

# Bump when the way the images are built changes in a way the hashed files do not show.
BUILD_REV=1
KEEP=3 # entries kept per image when pruning

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PROG="tests/cluster/build-images.sh"

# shellcheck source=tests/cluster/lib.sh
source "$HERE/lib.sh"

IMAGES=(pause helper runner demo-app)
RECIPE=(images/build.py images/oci.py images/dockerfile.py)
need_files "${RECIPE[@]}" k8s/go.mod
for f in docker/helper.Dockerfile docker/runner.Dockerfile docker/demo-app.Dockerfile \
    docker/demo-app/main.go docker/demo-app/go.mod pyproject.toml README.md; do
    [[ -f "$REPO/$f" ]] || die "missing $REPO/$f (is the checkout complete?)"
done
for d in chaos experiments probes; do
    [[ -d "$REPO/$d" ]] || die "missing $REPO/$d/ (is the checkout complete?)"
done

T_START=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || {
    log "error: $PY not found; install python3 >= 3.11 or set PYTHON=/path/to/python3"
    exit 3
}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
    log "error: $PY is $("$PY" -V 2>&1); the builder needs python >= 3.11 (set PYTHON=...)"
    exit 3
}

# ---- cache keys -------------------------------------------------------------------------

# sha256 lines of files (path relative to the repo) and, for dirs, of every file below them
# except Python caches; file modes too (COPY keeps them).
digest_paths() {
    (
        cd "$REPO"
        find "$@" \( -name __pycache__ -o -name '*.egg-info' \) -prune -o -type f ! -name '*.pyc' \
            -printf '%m %p\n' | LC_ALL=C sort
        find "$@" \( -name __pycache__ -o -name '*.egg-info' \) -prune -o -type f ! -name '*.pyc' \
            -print0 | LC_ALL=C sort -z | xargs -0 -r "${SHA[@]}"
    )
}

common() {
    echo "rev=$BUILD_REV platform=$PLATFORM"
    (cd "$HERE" && "${SHA[@]}" "${RECIPE[@]}")
}

tool_version() { "$@" 2>/dev/null | head -n1 || echo "none"; }

declare -A KEYS
KEYS[pause]="pause-$({
    common
    grep -E '^\s*k8s\.io/kubernetes\s' "$HERE/k8s/go.mod" || true
    tool_version "${CC:-gcc}" --version
} | short_hash)"
KEYS[helper]="helper-$({
    common
    digest_paths docker/helper.Dockerfile
} | short_hash)"
KEYS[runner-base]="runner-base-$({
    common
    digest_paths docker/runner.Dockerfile
} | short_hash)"
KEYS[runner]="runner-$({
    common
    echo "base=${KEYS[runner-base]}"
    digest_paths docker/runner.Dockerfile pyproject.toml README.md chaos experiments probes
    [[ ! -f "$REPO/docker/runner.Dockerfile.dockerignore" ]] ||
        digest_paths docker/runner.Dockerfile.dockerignore
} | short_hash)"
KEYS[demo-app]="demo-app-$({
    common
    digest_paths docker/demo-app.Dockerfile docker/demo-app
    tool_version "${GO:-go}" env GOVERSION
} | short_hash)"

TOP_KEY="images-$(
    for i in "${IMAGES[@]}"; do echo "$i=${KEYS[$i]}"; done | { cat; echo "rev=$BUILD_REV"; } | short_hash
)"
DIR="$CACHE_ROOT/$TOP_KEY"
PARTS="$CACHE_ROOT/images-parts"
STAMP="$DIR/stamp"
FORCE="${CHAOS_TESTBIN_FORCE:-0}"

complete() {
    [[ -f "$STAMP" ]] || return 1
    local i
    for i in "${IMAGES[@]}"; do [[ -s "$DIR/$i.tar" ]] || return 1; done
}

# Fast path: a finished build is present.
if [[ "$FORCE" != 1 ]] && complete; then
    # Last use (its mtime is what pruning looks at) and the warm time; the stamp has the cold one.
    T_WARM="$(elapsed "$T_START")"
    printf 'used=%s\ntime.warm: %ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$T_WARM" >"$DIR/used" 2>/dev/null || true
    log "cached: $DIR (${T_WARM}s; cold build: $(sed -n 's/^time.total: //p' "$STAMP"))"
    printf '%s\n' "$DIR"
    exit 0
fi

mkdir -p "$DIR" "$PARTS" || die "cannot create $DIR"
if lock_build "$DIR" "$TOP_KEY"; then
    if [[ "$FORCE" != 1 ]] && complete; then
        log "cached (built by the other process): $DIR"
        touch "$DIR/used"
        printf '%s\n' "$DIR"
        exit 0
    fi
fi
rm -f "$STAMP"

# ---- building ---------------------------------------------------------------------------

CHILD=
on_signal() {
    trap - INT TERM
    if [[ -n "$CHILD" ]]; then kill -TERM "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    rm -f "$DIR/stamp.tmp"
    log "interrupted (no stamp written; the next run builds again)"
    exit 130
}
trap on_signal INT TERM

declare -A TIMES
# build_part <key> <image> [args...]: builds into $PARTS/<key> unless its stamp is there.
build_part() {
    local key="$1" image="$2"
    shift 2
    local part="$PARTS/$key" t0 rc
    mkdir -p "$part"
    if [[ "$FORCE" != 1 && -f "$part/stamp" ]]; then
        log "$image: cached ($part)"
        TIMES[$image]="cached"
        return 0
    fi
    # Per-part lock on fd 8 (fd 9 holds the top-level lock), so that two checkouts that share
    # this image do not build it at the same time.
    if command -v flock >/dev/null 2>&1; then
        exec 8>"$part/lock"
        if ! flock -n 8; then
            log "$image: another build of $key is running; waiting for it"
            flock 8
        fi
        if [[ "$FORCE" != 1 && -f "$part/stamp" ]]; then
            exec 8>&-
            log "$image: cached (built by the other process)"
            TIMES[$image]="cached"
            return 0
        fi
    fi
    rm -f "$part/stamp"
    log "$image: building $key"
    t0=$(date +%s.%N)
    "$PY" "$HERE/images/build.py" "$image" --repo "$REPO" --out "$part" --work "$part/work" "$@" >&2 &
    CHILD=$!
    rc=0
    wait "$CHILD" || rc=$?
    CHILD=
    if [[ $rc -ne 0 ]]; then
        [[ $rc -eq 3 ]] && {
            log "error: cannot build $image: a prerequisite is missing (see above); install it and run $PROG again"
            exit 3
        }
        die "building $image ($key) failed (exit $rc); see the output above. Re-run $PROG after fixing it (CHAOS_TESTBIN_FORCE=1 rebuilds everything)"
    fi
    TIMES[$image]="$(elapsed "$t0")s"
    printf 'key=%s\nbuilt=%s\ntime: %s\n' "$key" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${TIMES[$image]}" \
        >"$part/stamp.tmp"
    mv -f "$part/stamp.tmp" "$part/stamp"
    exec 8>&-
    log "$image: built in ${TIMES[$image]}"
}

build_part "${KEYS[pause]}" pause
build_part "${KEYS[demo-app]}" demo-app
build_part "${KEYS[helper]}" helper
build_part "${KEYS[runner]}" runner --base-cache "$PARTS/${KEYS[runner-base]}"

# Assemble: hard links to the per-image archives (a copy where links are impossible).
for i in "${IMAGES[@]}"; do
    src="$PARTS/${KEYS[$i]}"
    [[ -s "$src/$i.tar" && -s "$src/$i.json" ]] || die "$src/$i.tar is missing after the build"
    ln -f "$src/$i.tar" "$DIR/.$i.tar.tmp" 2>/dev/null || cp -f "$src/$i.tar" "$DIR/.$i.tar.tmp"
    mv -f "$DIR/.$i.tar.tmp" "$DIR/$i.tar"
    cp -f "$src/$i.json" "$DIR/$i.json"
done
"$PY" - "$DIR" "${IMAGES[@]}" <<'EOF' || die "cannot write $DIR/images.json"
import json, sys
d, images = sys.argv[1], sys.argv[2:]
out = {i: json.load(open(f"{d}/{i}.json")) for i in images}
with open(f"{d}/images.json.tmp", "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
import os
os.replace(f"{d}/images.json.tmp", f"{d}/images.json")
EOF

TOTAL="$(elapsed "$T_START")"
{
    echo "key=$TOP_KEY"
    for i in "${IMAGES[@]}"; do
        size=$(stat -c %s "$DIR/$i.tar")
        echo "image.$i=$(sed -n 's/.*"name": "\(.*\)".*/\1/p' "$DIR/$i.json" | head -n1) key=${KEYS[$i]} bytes=$size"
        echo "time.$i: ${TIMES[$i]}"
    done
    echo "runner-base=${KEYS[runner-base]}"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "time.total: ${TOTAL}s"
} >"$DIR/stamp.tmp"
mv -f "$DIR/stamp.tmp" "$STAMP" # written last: only now is the output dir reusable

# ---- pruning --------------------------------------------------------------------------
# Per-image parts: the newest $KEEP of each kind stay (the output dirs hold hard links to
# their archives, so deleting a part never breaks an output dir). Output dirs: those not used
# (printed by this script) for an hour, beyond the newest $KEEP. Anything locked is skipped.
# Only names <prefix><12 hex digits> match, so "runner-" does not match "runner-base-...".
prune() { # <prefix> <minutes unused, 0: any> <current key>...
    local prefix="$1" idle="$2"
    shift 2
    local d n=0 k keep
    while IFS= read -r d; do
        [[ -n "$d" && "$(basename "$d")" =~ ^$(basename "$prefix")[0-9a-f]{12}$ ]] || continue
        keep=0
        for k in "$@"; do [[ "$(basename "$d")" == "$k" ]] && keep=1; done
        [[ $keep -eq 0 ]] || continue
        n=$((n + 1))
        [[ $n -ge $KEEP ]] || continue
        if [[ $idle -gt 0 && -e "$d/used" && -z "$(find "$d/used" -mmin "+$idle" 2>/dev/null)" ]]; then
            continue
        fi
        if command -v flock >/dev/null 2>&1 && [[ -e "$d/lock" ]]; then
            (flock -n 7 && rm -rf "$d") 7<"$d/lock" 2>/dev/null || continue
        else
            rm -rf "$d"
        fi
        log "pruned $d"
    done < <(ls -dt "$prefix"* 2>/dev/null)
}
for i in pause helper runner-base runner demo-app; do
    prune "$PARTS/$i-" 0 "${KEYS[pause]}" "${KEYS[helper]}" "${KEYS[runner-base]}" "${KEYS[runner]}" "${KEYS[demo-app]}"
done
prune "$CACHE_ROOT/images-" 60 "$TOP_KEY"
touch "$DIR/used"

log "images ready in ${TOTAL}s: $(for i in "${IMAGES[@]}"; do printf '%s=%s ' "$i" "${TIMES[$i]}"; done)"
printf '%s\n' "$DIR"
