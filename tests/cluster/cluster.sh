#!/usr/bin/env bash
# Start or stop a test control plane by hand, the same way the kube_cluster fixture does
# (tests/k8s/conftest.py; keep the kwokctl flags of both in step). See docs/test-cluster.md.
#
#   tests/cluster/cluster.sh up   [NAME]   # build if needed, create cluster + 3 fake nodes
#   tests/cluster/cluster.sh up   [NAME] --real-node
#                                          # ... plus the real node (containerd + kubelet +
#                                          # kube-proxy; root), in the foreground until Ctrl-C,
#                                          # which stops the node and deletes the cluster
#   tests/cluster/cluster.sh down [NAME]   # delete it
#   tests/cluster/cluster.sh env  [NAME]   # print export lines: eval "$(tests/cluster/cluster.sh env)"
#
# NAME defaults to "chaos-dev". State lives in ${KWOK_WORKDIR:-$HOME/.cache/chaos-testbin/kwok}.
# Binaries: $CHAOS_TESTBIN if set, else whatever tests/cluster/build.sh prints.

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="tests/cluster/cluster.sh"
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

cmd="${1:-}"
name=chaos-dev
real_node=0
for a in "${@:2}"; do
    case "$a" in
        --real-node) real_node=1 ;;
        -*) die "unknown option $a" ;;
        *) name="$a" ;;
    esac
done
[[ "$cmd" =~ ^(up|down|env)$ ]] || die "usage: $PROG up|down|env [NAME]"

if [[ -n "${CHAOS_TESTBIN:-}" ]]; then
    BIN="$CHAOS_TESTBIN"
else
    BIN="$("$HERE/build.sh" | tail -n 1)" || die "tests/cluster/build.sh failed (output above)"
fi
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing or not executable"
done

export KWOK_WORKDIR="${KWOK_WORKDIR:-${CHAOS_TESTBIN_CACHE:-$HOME/.cache/chaos-testbin}/kwok}"
export KWOK_KUBE_VERSION="${KWOK_KUBE_VERSION:-v1.34.4}"
export KWOK_ETCD_VERSION="${KWOK_ETCD_VERSION:-3.6.16}"
export KWOK_KUBECTL_BINARY="$BIN/kubectl"
export PATH="$BIN:$PATH"
KUBECONFIG_FILE="$KWOK_WORKDIR/clusters/$name/kubeconfig.yaml"

case "$cmd" in
up)
    args=(
        --name "$name" create cluster --runtime binary --kube-authorization
        --etcd-binary "$BIN/etcd"
        --kube-apiserver-binary "$BIN/kube-apiserver"
        --kube-controller-manager-binary "$BIN/kube-controller-manager"
        --kube-scheduler-binary "$BIN/kube-scheduler"
        --kwok-controller-binary "$BIN/kwok"
        # kwokctl merges a context into this file; keep it away from ~/.kube/config.
        --kubeconfig "$KWOK_WORKDIR/kubeconfig-merged.yaml"
        --wait 180s --timeout 180s
        # kwok manages only its fake nodes; the API server can serve a real node's pods.
        --config "$KWOK_WORKDIR/$name.kwokctl-config.yaml"
    )
    mkdir -p "$KWOK_WORKDIR"
    python3 "$HERE/realnode.py" kwokctl-config --name "$name" --workdir "$KWOK_WORKDIR" \
        >"$KWOK_WORKDIR/$name.kwokctl-config.yaml"
    if kwokctl "${args[@]}" --dry-run | grep '^# Download' | grep -q '://'; then
        die "kwokctl would download something; every component must be a local binary"
    fi
    t0=$(date +%s)
    kwokctl "${args[@]}"
    kwokctl --name "$name" scale node --replicas 3
    kubectl --kubeconfig "$KUBECONFIG_FILE" wait --for=condition=Ready node --all --timeout=90s
    echo "cluster $name up in $(($(date +%s) - t0))s" >&2
    echo "kubeconfig: $KUBECONFIG_FILE" >&2
    echo "use it:     eval \"\$($PROG env $name)\"; kubectl get nodes" >&2
    if [[ $real_node == 1 ]]; then
        NODE_BIN="${CHAOS_NODEBIN:-$("$HERE/build-node.sh" | tail -n 1)}" || die "tests/cluster/build-node.sh failed"
        IMAGES="${CHAOS_IMAGES:-$("$HERE/build-images.sh" | tail -n 1)}" || die "tests/cluster/build-images.sh failed"
        echo "starting the real node (Ctrl-C stops it and deletes the cluster)" >&2
        rc=0
        python3 "$HERE/realnode.py" up --name "$name" --workdir "$KWOK_WORKDIR" \
            --node-bin "$NODE_BIN" --control-bin "$BIN" --images "$IMAGES" \
            --base-dir "$KWOK_WORKDIR/$name.node" || rc=$?
        kwokctl --name "$name" delete cluster
        exit $rc
    fi
    ;;
down)
    kwokctl --name "$name" delete cluster
    ;;
env)
    # shellcheck disable=SC2016 # $PATH is for the shell that evals this
    printf 'export PATH="%s:$PATH"\n' "$BIN"
    printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
    printf 'export KWOK_WORKDIR=%q\n' "$KWOK_WORKDIR"
    ;;
esac
