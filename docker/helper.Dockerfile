# The helper image the Kubernetes faults run as ephemeral containers: tc (netem) for
# networkLatency, stress-ng for cpuStress, timeout and pkill for their self-expiry and undo.
#   docker build -f docker/helper.Dockerfile -t ghcr.io/chaos-runner/helper:0.1.0 docker/
# It runs as root inside the target pod's namespaces because tc needs CAP_NET_ADMIN (granted
# per container by the fault, never to the runner). Pin the base by digest when publishing.
FROM debian:bookworm-20251117-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 stress-ng procps coreutils \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT []
CMD ["sh"]
