#!/usr/bin/env bash
# Installs Debian's packages for the real test node (tests/cluster/realnode.py) and for building
# its images without Docker (tests/cluster/build-images.sh):
#   containerd, runc                 the container runtime (containerd 1.6, runc 1.1 on bookworm)
#   containernetworking-plugins      bridge, host-local, loopback, portmap in /usr/lib/cni
#   nftables                         kube-proxy runs in nftables mode (its own table)
#   mmdebstrap, umoci                Debian root filesystems for the helper and runner images
# The containerd package registers a systemd service; nothing here starts it (there is no
# systemd on the test machines): the node starts its own containerd with its own socket.
set -euo pipefail
here=$(dirname "$0")
bash "$here/../apt-ensure.sh" tests/cluster containerd runc containernetworking-plugins \
    nftables mmdebstrap umoci
python3 "$here/realnode.py" check
echo "tests/cluster: real node ok ($(containerd --version | cut -d' ' -f3), $(runc --version | head -n1))"
