"""The Kubernetes access layer under a misbehaving API server.

A small HTTPS reverse proxy, written here, stands between a KubeClient and the real test
apiserver. It answers a chosen fraction of requests with HTTP 500 or 429, drops the connection
before forwarding, or forwards and then drops the connection so the response is lost (the request
took effect; the client cannot know). Everything else is forwarded, authenticated upstream with
the admin kubeconfig's credentials. The tests show that calls succeed through ~30% faults thanks
to bounded retries, that retried creates and deletes do not double up, and that a server that
always fails makes calls fail with Unavailable in bounded time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import random
import socket
import ssl
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from chaos.platform.kubernetes import KubeClient, PodRef, RetryPolicy, Unavailable

pytestmark = pytest.mark.k8s
T = TypeVar("T")

#: Fault kinds the proxy can inject.
ERROR_500 = "500"
TOO_MANY = "429"
DROP = "drop"  # close the connection without forwarding
DROP_AFTER = "drop-after"  # forward, then close without answering: the response is lost

_HOP_BY_HOP = {
    "host",
    "authorization",
    "connection",
    "keep-alive",
    "content-length",
    "transfer-encoding",
    "accept-encoding",
    "proxy-connection",
    "te",
    "upgrade",
}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (it is its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chaos-test-proxy")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "proxy.crt", directory / "proxy.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Upstream:
    host: str
    ca: str
    cert: str | None
    key: str | None
    token: str | None

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str) -> Upstream:
        from kubernetes import client
        from kubernetes import config as k8s_config

        cfg = client.Configuration()
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        return cls(cfg.host, cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file, token)


@dataclass
class FaultyProxy:
    """An HTTPS reverse proxy to the apiserver that injects faults into a fraction of requests.

    ``script`` faults are used first, one per request (None: forward); afterwards each request
    gets a fault with probability ``fraction``, chosen from ``kinds`` (seeded: reproducible)."""

    upstream: Upstream
    workdir: Path
    fraction: float = 0.0
    kinds: tuple[str, ...] = (ERROR_500,)
    script: list[str | None] = field(default_factory=list)
    retry_after: str = "1"
    seed: int = 1
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    agents: Counter[str] = field(default_factory=Counter)  # User-Agent of every request
    port: int = 0
    _rng: random.Random = field(init=False)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.cert, self.key = self_signed_cert(self.workdir)

    # -- lifecycle (the proxy runs its own event loop in a thread) --------------------------

    def start(self) -> FaultyProxy:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert, self.key)
            upstream_ctx = ssl.create_default_context(cafile=self.upstream.ca)
            if self.upstream.cert and self.upstream.key:
                upstream_ctx.load_cert_chain(self.upstream.cert, self.upstream.key)
            self._client = httpx.AsyncClient(verify=upstream_ctx, trust_env=False, timeout=30)
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ctx)
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()

        def main() -> None:
            assert self._loop is not None
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name="faulty-proxy", daemon=True)
        self._thread.start()
        assert started.wait(10), "the proxy did not start"
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            # Connections the client keeps alive are still being served: end them.
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            if self._client is not None:
                await self._client.aclose()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    def kubeconfig(self) -> Path:
        """A kubeconfig that reaches the apiserver only through this proxy."""
        path = self.workdir / "via-proxy.kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "proxy",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.port}",
                        "certificate-authority": str(self.cert),
                    },
                }
            ],
            # The proxy authenticates upstream itself; this token is never checked.
            "users": [{"name": "proxy", "user": {"token": "via-proxy"}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(json.dumps(config))
        return path

    # -- the proxy itself --------------------------------------------------------------------

    def _decide(self) -> str | None:
        self.requests += 1
        if self.script:
            fault = self.script.pop(0)
        elif self._rng.random() < self.fraction:
            fault = self._rng.choice(self.kinds)
        else:
            fault = None
        if fault:
            self.faults[fault] += 1
        return fault

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            # Abrupt, like a crashing server or a middlebox reset: no TLS close_notify.
            writer.transport.abort()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = [tuple(s.strip() for s in line.split(":", 1)) for line in lines if ":" in line]
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        body = await reader.readexactly(length) if length else b""
        self.agents[next((v for k, v in headers if k.lower() == "user-agent"), "")] += 1

        fault = self._decide()
        if fault == DROP:
            return False
        if fault in (ERROR_500, TOO_MANY):
            code, reason = (
                (500, "InternalError") if fault == ERROR_500 else (429, "TooManyRequests")
            )
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"injected by the test proxy ({fault})",
                "reason": reason,
                "code": code,
            }
            extra = {"Retry-After": self.retry_after} if fault == TOO_MANY else {}
            phrase = "Internal Server Error" if code == 500 else "Too Many Requests"
            await self._respond(writer, code, phrase, [], json.dumps(status).encode(), extra)
            return True

        assert self._client is not None
        forward = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP}
        if self.upstream.token:
            forward["Authorization"] = f"Bearer {self.upstream.token}"
        response = await self._client.request(
            method, self.upstream.host + target, headers=forward, content=body
        )
        if fault == DROP_AFTER:
            return False
        kept = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"
        ]
        await self._respond(
            writer, response.status_code, response.reason_phrase, kept, response.content, {}
        )
        return True

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter,
        code: int,
        phrase: str,
        headers: list[tuple[str, str]],
        body: bytes,
        extra: dict[str, str],
    ) -> None:
        lines = [f"HTTP/1.1 {code} {phrase}"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        if not any(k.lower() == "content-type" for k, _ in headers):
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()


@pytest.fixture
def proxy(kube_cluster: Any, tmp_path: Path) -> Iterator[FaultyProxy]:
    p = FaultyProxy(Upstream.from_kubeconfig(kube_cluster.kubeconfig), tmp_path).start()
    try:
        yield p
    finally:
        p.stop()


def create_pods(cluster: Any, ns: str, names: list[str]) -> None:
    from kubernetes import client

    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        for name in names:
            core.create_namespaced_pod(
                ns,
                {
                    "metadata": {"name": name, "labels": {"app": "flaky"}},
                    "spec": {
                        "nodeSelector": cluster.node_selector,
                        "tolerations": cluster.tolerations,
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "app", "image": "registry.invalid/fake:1"}],
                    },
                },
            )


def admin_json(cluster: Any, path: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "--raw", path).stdout
    result: dict[str, Any] = json.loads(out)
    return result


#: More attempts than the default so that 30% faults cannot fail a call by bad luck (0.3^8 is
#: 7e-5 per call); short backoff keeps the test quick. The default policy is tested below.
PATIENT = RetryPolicy(attempts=8, initial_backoff=0.05, max_backoff=0.5, jitter=0.05)


def test_calls_succeed_through_thirty_percent_faults(
    kube_cluster: Any, k8s_namespace: str, proxy: FaultyProxy
) -> None:
    ns = k8s_namespace
    names = [f"p{i}" for i in range(6)]
    create_pods(kube_cluster, ns, names)
    proxy.fraction, proxy.kinds = 0.3, (ERROR_500, DROP, DROP_AFTER)

    async def main() -> None:
        t0 = time.monotonic()
        async with await KubeClient.connect(str(proxy.kubeconfig()), retry=PATIENT) as kc:
            for _ in range(5):
                pods = await kc.list_pods(ns, labels={"app": "flaky"})
                assert [p.name for p in pods] == names
            for pod in pods:
                await kc.delete_pod(pod, grace_period=0)
            for round_ in range(3):
                await kc.acquire_lease(ns, "target", "run-a", 30)
                await kc.renew_lease(ns, "target", "run-a")
                await kc.release_lease(ns, "target", "run-a")
                assert await kc.read_lease(ns, "target") is None, round_
            for i in range(5):
                await kc.emit_event(
                    namespace=ns,
                    involved={"kind": "Pod", "name": "p0"},
                    reason="ChaosProbe",
                    message=f"event {i}",
                )
        print(
            f"\n{proxy.requests} requests, faults {dict(proxy.faults)}, "
            f"{time.monotonic() - t0:.1f}s"
        )

    run(main())
    # The faults did happen, of every kind (the seeded sequence is the same on every run).
    assert sum(proxy.faults.values()) >= 10, proxy.faults
    assert set(proxy.faults) == {ERROR_500, DROP, DROP_AFTER}, proxy.faults
    remaining = admin_json(kube_cluster, f"/api/v1/namespaces/{ns}/pods")["items"]
    assert [
        p["metadata"]["name"] for p in remaining if not p["metadata"].get("deletionTimestamp")
    ] == []
    # A create whose response was lost and was retried made no duplicate.
    events = admin_json(kube_cluster, f"/apis/events.k8s.io/v1/namespaces/{ns}/events")["items"]
    notes = sorted(e.get("note") for e in events if e.get("reason") == "ChaosProbe")
    assert notes == [f"event {i}" for i in range(5)]


def test_lost_responses_are_recognised_as_our_own_success(
    kube_cluster: Any, k8s_namespace: str, proxy: FaultyProxy
) -> None:
    """Each mutating call's first attempt takes effect but its response is lost; the retry
    must see that (404 on delete, 409 on create, a changed resourceVersion on update)."""
    ns = k8s_namespace
    create_pods(kube_cluster, ns, ["lost"])

    async def main() -> None:
        async with await KubeClient.connect(str(proxy.kubeconfig()), retry=PATIENT) as kc:
            (pod,) = await kc.list_pods(ns)
            proxy.script = [DROP_AFTER]
            await kc.delete_pod(pod, grace_period=0)

            proxy.script = [None, DROP_AFTER]  # GET (absent), POST (created, response lost)
            await kc.acquire_lease(ns, "t", "run-a", 30)
            proxy.script = [None, DROP_AFTER]  # GET, PUT (renewed, response lost)
            await kc.renew_lease(ns, "t", "run-a")
            info = await kc.read_lease(ns, "t")
            assert info is not None and info.holder == "run-a"
            proxy.script = [None, DROP_AFTER]  # GET, DELETE (deleted, response lost)
            await kc.release_lease(ns, "t", "run-a")
            assert await kc.read_lease(ns, "t") is None

            proxy.script = [DROP_AFTER]
            await kc.emit_event(
                namespace=ns, involved={"kind": "Pod", "name": "lost"}, reason="Once", message="m"
            )
            assert proxy.faults[DROP_AFTER] == 5

    run(main())
    events = admin_json(kube_cluster, f"/apis/events.k8s.io/v1/namespaces/{ns}/events")["items"]
    assert [e["reason"] for e in events if e["reason"] == "Once"] == ["Once"]


def test_a_server_that_always_fails_gives_unavailable_in_bounded_time(
    kube_cluster: Any, k8s_namespace: str, proxy: FaultyProxy
) -> None:
    proxy.fraction, proxy.kinds = 1.0, (ERROR_500,)
    policy = RetryPolicy()  # the default: 5 attempts, ~20 s at most

    async def main() -> None:
        async with await KubeClient.connect(str(proxy.kubeconfig()), retry=policy) as kc:
            t0 = time.monotonic()
            with pytest.raises(Unavailable) as exc:
                await kc.list_pods(k8s_namespace)
            elapsed = time.monotonic() - t0
            message = str(exc.value)
            assert message.startswith(
                f"list pods in namespace {k8s_namespace} failed: 500 Internal Server Error: "
                "injected by the test proxy"
            )
            assert "gave up after 5 attempts" in message
            assert proxy.requests == 5
            # 0.2 + 0.4 + 0.8 + 1.6 s of backoff plus jitter: well inside the 20 s bound.
            assert 2.5 < elapsed < 10, elapsed
            print(f"\n100% 500s: Unavailable after {elapsed:.1f}s")

            proxy.kinds, proxy.requests = (DROP,), 0
            pod = PodRef(k8s_namespace, "x", "uid", None, None)
            with pytest.raises(Unavailable, match="no response from the API server"):
                await kc.delete_pod(pod, grace_period=0)
            assert proxy.requests == 5

    run(main())


def test_retry_after_is_honoured_and_capped(
    kube_cluster: Any, k8s_namespace: str, proxy: FaultyProxy
) -> None:
    async def main() -> None:
        async with await KubeClient.connect(str(proxy.kubeconfig())) as kc:
            proxy.script, proxy.retry_after = [TOO_MANY, TOO_MANY], "1"
            t0 = time.monotonic()
            assert await kc.list_pods(k8s_namespace) == []
            assert 2.0 <= time.monotonic() - t0 < 6

        capped = RetryPolicy(max_retry_after=0.3)
        async with await KubeClient.connect(str(proxy.kubeconfig()), retry=capped) as kc:
            proxy.script, proxy.retry_after = [TOO_MANY], "3600"
            t0 = time.monotonic()
            assert await kc.namespace_exists(k8s_namespace)
            assert time.monotonic() - t0 < 3

    run(main())


def test_connection_refused_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    kubeconfig = tmp_path / "dead.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "dead",
                        "cluster": {
                            "server": f"https://127.0.0.1:{port}",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
                "current-context": "dead",
            }
        )
    )
    policy = RetryPolicy(attempts=3, initial_backoff=0.05, jitter=0.0)

    async def main() -> None:
        async with await KubeClient.connect(str(kubeconfig), retry=policy) as kc:
            t0 = time.monotonic()
            with pytest.raises(Unavailable) as exc:
                await kc.server_version()
            assert time.monotonic() - t0 < 5
        assert f"get server version of https://127.0.0.1:{port} failed" in str(exc.value)
        assert "refused" in str(exc.value).lower()
        assert "gave up after 3 attempts" in str(exc.value)

    run(main())


def test_a_concurrent_pod_kill_survives_faults_and_names_its_run(
    kube_cluster: Any, k8s_namespace: str, proxy: FaultyProxy
) -> None:
    """The kill sends its deletes several at a time; lost responses, 500s and dropped
    connections on any of them are retried (uid precondition: no replacement is hit), every pod
    goes, and every request says which run made it (what an audit log would attribute)."""
    from chaos.model import load_experiment_text
    from chaos.targets.kubernetes import KubePlatform

    ns = k8s_namespace
    names = [f"p{i:02d}" for i in range(24)]
    create_pods(kube_cluster, ns, names)
    exp = load_experiment_text(textwrap.dedent(f"""\
        apiVersion: chaos/v1
        kind: Experiment
        metadata: {{name: concurrent-kill}}
        spec:
          target: {{platform: kubernetes, namespace: {ns}}}
          probes:
            - {{name: pods, interval: 1s, kubernetes: {{pods: {{selector: {{app: flaky}}, ready: ">= 0"}}}}}}
          slos: []
          limits: {{maxPods: 50}}
          faults:
            - name: kill-all
              podKill: {{selector: {{labels: {{app: flaky}}, mode: all}}, gracePeriod: 0s}}
              at: 0s
        """))

    async def main() -> None:
        platform = KubePlatform(exp, "r-concurrent", connect=lambda: KubeClient.connect(
            str(proxy.kubeconfig()), retry=PATIENT))
        try:
            fault = await platform.plan_fault(exp.spec.faults[0])
            proxy.fraction, proxy.kinds = 0.3, (ERROR_500, DROP, DROP_AFTER)
            await fault.inject()
            proxy.fraction = 0.0
        finally:
            await platform.close()

    run(main())
    assert sum(proxy.faults.values()) >= 5, proxy.faults
    remaining = admin_json(kube_cluster, f"/api/v1/namespaces/{ns}/pods")["items"]
    assert [p["metadata"]["name"] for p in remaining
            if not p["metadata"].get("deletionTimestamp")] == []
    assert set(proxy.agents) == {"chaos-runner/0.1.0 (run r-concurrent)"}, proxy.agents
