# Shared by build.sh, build-helm.sh and build-node.sh (sourced, never run): logging, reading versions from the
# wrapper go.mod files, the platform and hash for cache keys, the per-key build lock, finding Go.
# The caller sets HERE (this directory) and PROG (its name for messages) first.

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# Version of a required module, read from a wrapper go.mod without needing go.
modver() { # <go.mod> <module path>
    local v
    v="$(awk -v m="$2" '($1=="require" && $2==m){print $3; exit} ($1==m && $2 ~ /^v/){print $2; exit}' "$1")"
    [[ -n "$v" ]] || die "cannot find the version of $2 in $1"
    printf '%s' "$v"
}

need_files() { # <path relative to HERE>...
    local f
    for f in "$@"; do
        [[ -f "$HERE/$f" ]] || die "missing $HERE/$f (is the checkout complete?)"
    done
}

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) PLATFORM=linux-amd64 ;;
    Linux/aarch64 | Linux/arm64) PLATFORM=linux-arm64 ;;
    Darwin/x86_64) PLATFORM=darwin-amd64 ;;
    Darwin/arm64) PLATFORM=darwin-arm64 ;;
    *) PLATFORM="$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m)" ;;
esac

if command -v sha256sum >/dev/null 2>&1; then
    SHA=(sha256sum)
elif command -v shasum >/dev/null 2>&1; then
    SHA=(shasum -a 256)
else
    die "need sha256sum or shasum to compute the cache key"
fi

# First 12 hex digits of the SHA-256 of stdin (the recipe part of a cache key).
short_hash() { "${SHA[@]}" | cut -c1-12; }

CACHE_ROOT="${CHAOS_TESTBIN_CACHE:-${HOME:?HOME is not set; set CHAOS_TESTBIN_CACHE}/.cache/chaos-testbin}"

# One build at a time per key (parallel pytest workers, two terminals ...): holds fd 9 on
# <dir>/lock until the script exits. Returns 1 when flock is missing (no lock; build anyway).
lock_build() { # <dir> <key>
    command -v flock >/dev/null 2>&1 || return 1
    exec 9>"$1/lock"
    if ! flock -n 9; then
        log "another build of $2 is running; waiting for it (lock: $1/lock)"
        flock 9
    fi
}

# Sets GO and GO_VERSION, or explains how to get Go and exits 3. <hint>: extra install advice.
require_go() { # <bin dir the cache would have> [<hint>]
    GO="${GO:-go}"
    if ! command -v "$GO" >/dev/null 2>&1; then
        printf '%s: error: Go is not installed (no "%s" on PATH), and no finished build is cached at\n  %s\nInstall Go >= 1.26 (https://go.dev/dl/%b) and run %s again.\n' \
            "$PROG" "$GO" "$1" "${2:-}" "$PROG" >&2
        exit 3
    fi
    GO_VERSION="$("$GO" env GOVERSION 2>/dev/null)" || die "'$GO env GOVERSION' failed; is Go installed correctly?"
}

# The ldflags of a Kubernetes binary, so that /version and --version are honest:
# K8S_LDFLAGS for <version> (e.g. v1.34.4) and BUILD_DATE. The module zip carries no commit id;
# it stays empty unless KUBE_GIT_COMMIT is set, rather than invented.
k8s_ldflags() { # <version>
    local kv major minor pkg
    BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    kv="${1#v}"
    major="${kv%%.*}"
    kv="${kv#*.}"
    minor="${kv%%.*}"
    K8S_LDFLAGS="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        K8S_LDFLAGS+=" -X $pkg.gitVersion=$1 -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        K8S_LDFLAGS+=" -X $pkg.gitCommit=${KUBE_GIT_COMMIT:-}"
        K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE"
    done
}
