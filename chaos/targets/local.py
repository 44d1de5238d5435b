"""The local platform: a run's resources on this machine and the wiring of its faults, probes
and rollbacks to them.

It owns what a run shares: the TCP proxies (started before the baseline), one HTTP client for
every probe and rollback, the lookup of local processes within ``limits.maxProcesses``. Faults
are planned by their kind (chaos.faults.registry) against this context; probes are built by
their kind (chaos.probes.registry). Nothing here knows a fault or probe kind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from chaos.errors import InvalidInput, PlatformError, TargetNotFound
from chaos.model.experiment import split_hostport

if TYPE_CHECKING:
    import httpx

    from chaos.engine.protocols import Fault, Probe, StopRun
    from chaos.faults.contract import PlannedFault
    from chaos.model.common import ProcessTarget
    from chaos.model.experiment import Experiment, FaultSpec, Limits, ProbeSpec, RollbackSpec
    from chaos.platform.kubernetes import KubeClient
    from chaos.platform.local.procs import ProcInfo
    from chaos.platform.local.proxy import FaultProxy


def resolve_processes(target: ProcessTarget, limit: int) -> list[ProcInfo]:
    """The processes a target selects, checked against the blast-radius limit."""
    from chaos.platform.local import procs

    if target.pid is not None:
        info = procs.proc_info(target.pid)
        found = [info] if info else []
    elif target.pidfile is not None:
        pid = procs.read_pidfile(target.pidfile)
        info = procs.proc_info(pid)
        found = [info] if info else []
    elif target.name is not None:
        found = procs.find_by_name(target.name)
    else:
        assert target.port is not None
        found = procs.find_by_port(target.port)
    # Never pid 1, a kernel thread, the runner itself (a pidfile of /proc/self/stat, say) or
    # its own helpers: whatever the selector, refused here, before anything is touched.
    refused = [(p, why) for p in found if (why := procs.never_a_target(p)) is not None]
    if refused and target.name is None:
        p, why = refused[0]
        raise InvalidInput(
            f"{target.describe()} selects {p.describe()}, which can never be a fault's target: "
            f"{why}",
            hint="point the selector at the service's own process",
        )
    found = [p for p in found if procs.never_a_target(p) is None]
    if not found:
        raise TargetNotFound(
            f"no running process matches {target.describe()}"
            + (" (pid 1, kernel threads and the runner's own processes never do)"
               if target.name is not None else ""),
            hint="start the target first, or fix the selector (pid, pidfile, name, port)",
        )
    found.sort(key=lambda p: p.pid)
    if target.mode == "one":
        return found[:1]
    if len(found) > limit:
        listing = "; ".join(p.describe() for p in found[:5])
        raise InvalidInput(
            f"{target.describe()} matches {len(found)} processes, more than "
            f"limits.maxProcesses={limit}: {listing}",
            hint="narrow the selector, use mode: one, or raise limits.maxProcesses",
        )
    return found


class LocalPlatform:
    """The Platform protocol on this machine; the LocalContext of local faults and the
    ProbeContext of probes."""

    def __init__(self, experiment: Experiment, run_id: str = "-") -> None:
        from chaos.platform.local.proxy import FaultProxy

        self.experiment = experiment
        self._run_id = run_id
        spec = experiment.spec
        self.proxies: dict[str, FaultProxy] = {
            p.name: FaultProxy(p.name, split_hostport(p.listen), split_hostport(p.upstream))
            for p in spec.proxies
        }
        self._client: httpx.AsyncClient | None = None
        self._planned: list[PlannedFault[Any]] = []
        self._own_clients: list[httpx.AsyncClient] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []

    # -- LocalContext

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def limits(self) -> Limits:
        return self.experiment.spec.limits

    def proxy(self, name: str) -> FaultProxy:
        return self.proxies[name]

    def processes(self, target: ProcessTarget) -> list[ProcInfo]:
        return resolve_processes(target, self.limits.max_processes)

    # -- ProbeContext

    def http_client(self, *, verify: bool = True) -> httpx.AsyncClient:
        """One HTTP client for every probe and rollback of the run, closed in ``close``; a
        probe that does not verify TLS gets its own."""
        import httpx

        if not verify:
            own = httpx.AsyncClient(verify=False, trust_env=False)
            self._own_clients.append(own)
            return own
        if self._client is None:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                trust_env=False,
            )
        return self._client

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def kube_client(self) -> KubeClient:
        raise InvalidInput("a kubernetes probe needs spec.target.platform: kubernetes")

    def namespace(self, ns: str | None) -> str:
        raise InvalidInput("a kubernetes probe needs spec.target.platform: kubernetes")

    # -- Platform protocol

    async def plan_fault(self, spec: FaultSpec) -> Fault:
        fault = await spec.kind.plan_local(spec, self)
        self._planned.append(fault)
        return fault

    async def preflight(self) -> None:
        """Read-only checks that need the machine (root, tc, interfaces); touches nothing."""
        for fault in self._planned:
            await fault.preflight()

    async def prepare(self, stop: StopRun | None = None) -> None:
        started: list[FaultProxy] = []
        try:
            for proxy in self.proxies.values():
                await proxy.start()
                started.append(proxy)
        except Exception:
            for proxy in started:
                await proxy.stop()
            raise

    def probe(self, spec: ProbeSpec) -> Probe:
        return spec.kind.driver(spec, self)

    async def run_rollback(self, spec: RollbackSpec) -> str:
        """Run one rollback. A command gets the minimal environment plus its ``env:``; an HTTP
        call has a total deadline (its ``timeout``) and its body is not read (the status is all
        that counts). Details are masked (chaos.redact): a URL shows as scheme://host[:port]/…,
        a program that cannot be started by argv[0] only."""
        from chaos.redact import current

        redactor = current()
        if spec.command is not None:
            from chaos.platform.local.run import run_argv

            c = spec.command
            try:
                result = await run_argv(list(c.argv), timeout=c.timeout, env=dict(c.env),
                                        cwd=c.cwd, inherit_env=False)
            except PlatformError as exc:
                raise type(exc)(redactor.text(exc.message),
                                hint=exc.hint and redactor.text(exc.hint)) from None
            if result.timed_out:
                raise PlatformError(f"{c.argv[0]} timed out after {c.timeout:g}s")
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip()[-300:]
                raise PlatformError(
                    redactor.text(f"{c.argv[0]} exited with {result.returncode}: {tail}"))
            return f"exit 0 in {result.duration:.2f}s"
        if spec.http is None:
            raise InvalidInput(f"rollback '{spec.name}' needs spec.target.platform: kubernetes")
        import asyncio

        import httpx

        h = spec.http
        shown = f"{h.method} {redactor.url(h.url, path=False)}"
        try:
            async with asyncio.timeout(h.timeout):
                async with self.http_client().stream(h.method, h.url, headers=h.headers,
                                                     content=h.body, timeout=h.timeout) as response:
                    status = response.status_code
        except TimeoutError:
            raise PlatformError(f"{shown} timed out after {h.timeout:g}s (the whole request)"
                                ) from None
        except httpx.HTTPError as exc:
            raise PlatformError(
                redactor.text(f"{shown} failed: {exc or type(exc).__name__}")) from None
        if status not in h.expect_status:
            raise PlatformError(f"{shown} answered {status}")
        return f"{shown} -> {status}"

    async def finish(self, status: str, message: str) -> None:
        return None  # the journal and the logs are the local audit trail

    async def close(self) -> None:
        for proxy in self.proxies.values():
            try:
                await proxy.stop()
            except Exception:  # closing must not hide the run's own outcome
                continue
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        for own in self._own_clients:
            await own.aclose()
        self._own_clients.clear()
        for closer in self._closers:
            await closer()
        self._closers.clear()


__all__ = ["LocalPlatform", "resolve_processes"]
