# The runner image: chaos-runner with the Kubernetes extra, non-root, read-only friendly.
# Build from the repository root (there is no Docker engine on the project's dev machines; CI
# images are built elsewhere):
#   docker build -f docker/runner.Dockerfile -t ghcr.io/chaos-runner/runner:0.1.0 .
# Pin the base by digest when publishing (FROM python:3.11.11-slim-bookworm@sha256:...).
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY chaos ./chaos
RUN pip install --no-cache-dir --prefix=/install ".[kubernetes]"

FROM python:3.11.11-slim-bookworm
# tini reaps orphans: the runner spawns probes, rollbacks and watchdogs, and must never be a
# PID 1 that leaves zombies. (bookworm's tini is 0.19.0-1+b3, a binNMU; "=0.19.0-1" fails.)
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /install /usr/local
COPY experiments /opt/chaos/experiments
COPY probes /opt/chaos/probes
# The group first: `useradd --user-group` would give it the next free gid (1000), not 65532.
RUN groupadd --gid 65532 chaos \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/chaos chaos \
 && mkdir -p /var/lib/chaos && chown 65532:65532 /var/lib/chaos
USER 65532:65532
# The shipped probe templates: found by `use: probes/...` from any experiment, also one
# mounted from a ConfigMap (there is no .git here, so no project root to search up to).
ENV XDG_STATE_HOME=/var/lib/chaos PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CHAOS_PROBES_DIR=/opt/chaos/probes
WORKDIR /opt/chaos
ENTRYPOINT ["/usr/bin/tini", "--", "chaos"]
CMD ["--help"]
