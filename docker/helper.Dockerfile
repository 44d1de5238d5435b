# The helper image the Kubernetes faults run as ephemeral containers: tc (netem) for
# networkLatency, stress-ng for cpuStress, date, pgrep and pkill for their confirmation,
# self-expiry and undo (chaos/faults/network_latency.py, cpu_stress.py, _ephemeral.py), and
# nft (nftables) for packet filtering faults.
#   docker build -f docker/helper.Dockerfile -t REGISTRY/chaos-runner/helper:0.1.0 docker/
# The fault sets the securityContext: netem as root with only CAP_NET_ADMIN (granted per
# container, never to the runner), stress-ng as uid 65532 with no capabilities. No WORKDIR is
# needed (stress-ng gets --temp-path /tmp). Pin the base by digest when publishing.
FROM debian:bookworm-20251117-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 stress-ng procps coreutils nftables \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT []
CMD ["sh"]
