"""Local faults and the local Platform: what the engine drives on this machine.

Each fault resolves its targets when planned (so ``chaos plan`` shows real pids and addresses
and a missing target stops the run before anything is touched), applies itself on ``inject`` and
undoes itself on ``revert``. Reverts are idempotent: a target that has gone away is reverted.
Every durable fault also carries a dead-man's switch: it ends by itself after its duration plus
``SELF_EXPIRY_GRACE`` even if the runner is gone (proxy toxics expire, CPU burners have a deadline).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable

import httpx

from chaos.engine.protocols import Fault, Probe
from chaos.errors import ChaosError, InvalidInput, PlatformError, TargetNotFound
from chaos.model.experiment import (
    ConnectionReset,
    CpuStress,
    Experiment,
    FaultSpec,
    NetworkLatency,
    ProbeSpec,
    ProcessKill,
    ProcessPause,
    ProcessTarget,
    RollbackSpec,
    split_hostport,
)
from chaos.platform.local import procs
from chaos.platform.local.proxy import FaultProxy
from chaos.platform.local.run import run_argv
from chaos.platform.local.stress import CpuBurners
from chaos.platform.local.tc import Netem
from chaos.platform.local.watchdog import Watchdog, spawn_watchdog
from chaos.probes import CommandProbeDriver, HttpProbeDriver, TcpProbeDriver

SELF_EXPIRY_GRACE = 10.0


def resolve_processes(target: ProcessTarget, limit: int) -> list[procs.ProcInfo]:
    """The processes a target selects, checked against the blast-radius limit."""
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
    if not found:
        raise TargetNotFound(
            f"no running process matches {target.describe()}",
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


class _Base:
    one_shot = False
    grace = SELF_EXPIRY_GRACE

    def __init__(self, spec: FaultSpec) -> None:
        self._spec = spec
        self.tag = f"-/{spec.name}"  # run_id/fault; set by the platform

    @property
    def spec(self) -> FaultSpec:
        return self._spec

    def _expiry(self) -> float:
        """Seconds after injection when the fault removes itself, runner or no runner."""
        return (self._spec.duration or 0.0) + self.grace


class ProcessKillFault(_Base):
    one_shot = True

    def __init__(self, spec: FaultSpec, params: ProcessKill, targets: list[procs.ProcInfo]) -> None:
        super().__init__(spec)
        self.params = params
        self.procs = targets

    def targets(self) -> list[str]:
        return [p.describe() for p in self.procs]

    def describe(self) -> str:
        return f"send {self.params.signal} to {len(self.procs)} process(es)"

    def revert_state(self) -> dict[str, object]:
        return {"pids": [p.pid for p in self.procs]}

    def target_keys(self) -> list[str]:
        return [f"local:process:{p.pid}" for p in self.procs]

    async def inject(self) -> None:
        sig = signal.Signals[self.params.signal]
        for info in self.procs:
            procs.send_signal(info, sig)

    async def revert(self) -> None:
        return None


class ProcessPauseFault(_Base):
    def __init__(self, spec: FaultSpec, targets: list[procs.ProcInfo]) -> None:
        super().__init__(spec)
        self.procs = targets
        self.watchdog: Watchdog | None = None

    def targets(self) -> list[str]:
        return [p.describe() for p in self.procs]

    def describe(self) -> str:
        return f"pause (SIGSTOP) {len(self.procs)} process(es) for {self._spec.duration:g}s"

    def revert_state(self) -> dict[str, object]:
        state: dict[str, object] = {"pids": [p.pid for p in self.procs],
                                    "start_ticks": [p.start_ticks for p in self.procs]}
        if self.watchdog is not None:
            state.update(self.watchdog.state())
        return state

    def target_keys(self) -> list[str]:
        return [f"local:process:{p.pid}" for p in self.procs]

    async def inject(self) -> None:
        # The watchdog exists before the first SIGSTOP, so no moment leaves a process paused
        # with nothing that will resume it.
        self.watchdog = spawn_watchdog(self._expiry(), tag=self.tag, sigcont=self.procs)
        for info in self.procs:
            procs.send_signal(info, signal.SIGSTOP)

    async def revert(self) -> None:
        errors: list[str] = []
        for info in self.procs:
            try:
                procs.send_signal(info, signal.SIGCONT)
            except TargetNotFound:
                continue  # gone (or pid reused): nothing left paused by us
            except ChaosError as exc:
                errors.append(f"{info.describe()}: {exc.message}")
        if errors:
            raise PlatformError(
                "could not resume: " + "; ".join(errors),
                hint="resume by hand with: kill -CONT <pid>",
            )
        if self.watchdog is not None:
            self.watchdog.cancel()


class ProxyFault(_Base):
    def __init__(self, spec: FaultSpec, proxy: FaultProxy, params: NetworkLatency | ConnectionReset
                 ) -> None:
        super().__init__(spec)
        self.proxy = proxy
        self.params = params

    def targets(self) -> list[str]:
        host, port = self.proxy.listen
        return [f"proxy '{self.proxy.name}' {host}:{port} -> {self.proxy.upstream[0]}:"
                f"{self.proxy.upstream[1]}"]

    def describe(self) -> str:
        p = self.params
        if isinstance(p, ConnectionReset):
            return f"reset every connection through proxy '{p.proxy}'"
        text = f"add {p.delay * 1000:g}ms"
        if p.jitter:
            text += f" ±{p.jitter * 1000:g}ms"
        text += " latency to responses"
        if p.bandwidth:
            text += f", cap {p.bandwidth / 1000:g} kB/s"
        return text + f" through proxy '{p.proxy}'"

    def revert_state(self) -> dict[str, object]:
        host, port = self.proxy.listen
        return {"proxy": self.proxy.name, "listen": f"{host}:{port}"}

    def target_keys(self) -> list[str]:
        host, port = self.proxy.listen
        return [f"local:proxy:{host}:{port}"]

    async def inject(self) -> None:
        p = self.params
        if isinstance(p, ConnectionReset):
            self.proxy.set_toxic(reset=True, expires_in=self._expiry())
        else:
            self.proxy.set_toxic(delay=p.delay, jitter=p.jitter, bandwidth=p.bandwidth,
                                 expires_in=self._expiry())

    async def revert(self) -> None:
        self.proxy.clear()


class NetemFault(_Base):
    def __init__(self, spec: FaultSpec, netem: Netem) -> None:
        super().__init__(spec)
        self.netem = netem
        self.watchdog: Watchdog | None = None

    def targets(self) -> list[str]:
        p = self._spec.network_latency
        assert p is not None
        where = f" in netns {p.netns}" if p.netns else ""
        return [f"interface {p.interface}{where}"]

    def describe(self) -> str:
        return self.netem.command_preview()

    def revert_state(self) -> dict[str, object]:
        p = self._spec.network_latency
        assert p is not None
        state: dict[str, object] = {"interface": p.interface, "netns": p.netns}
        if self.watchdog is not None:
            state.update(self.watchdog.state())
        return state

    def target_keys(self) -> list[str]:
        p = self._spec.network_latency
        assert p is not None
        return [f"local:netem:{p.netns or 'host'}:{p.interface}"]

    async def inject(self) -> None:
        p = self._spec.network_latency
        assert p is not None
        assert p.interface is not None
        spec = p.interface + (f"@{p.netns}" if p.netns else "")
        self.watchdog = spawn_watchdog(self._expiry(), tag=self.tag, netem=[spec])
        await self.netem.apply()

    async def revert(self) -> None:
        await self.netem.remove()
        if self.watchdog is not None:
            self.watchdog.cancel()


class CpuStressFault(_Base):
    def __init__(self, spec: FaultSpec, params: CpuStress) -> None:
        super().__init__(spec)
        self.workers = params.workers or (os.cpu_count() or 1)
        self.load = params.load
        self.burners: CpuBurners | None = None

    def targets(self) -> list[str]:
        return [f"this machine: {self.workers} worker(s) at {self.load * 100:g}% of a core each"]

    def describe(self) -> str:
        return (f"burn CPU with {self.workers} lowest-priority worker(s) for "
                f"{self._spec.duration:g}s")

    def revert_state(self) -> dict[str, object]:
        pids = self.burners.pids if self.burners else []
        infos = [procs.proc_info(pid) for pid in pids]
        return {"pids": pids, "start_ticks": [i.start_ticks if i else 0 for i in infos]}

    def target_keys(self) -> list[str]:
        return ["local:cpu"]

    async def inject(self) -> None:
        self.burners = CpuBurners(self.workers, self.load, self._expiry())
        await self.burners.start()

    async def revert(self) -> None:
        if self.burners is not None:
            await self.burners.stop()


class LocalPlatform:
    """The Platform protocol on this machine: probes, local faults, proxies and rollbacks."""

    def __init__(self, experiment: Experiment, run_id: str = "-") -> None:
        self.experiment = experiment
        self.run_id = run_id
        spec = experiment.spec
        self.proxies: dict[str, FaultProxy] = {
            p.name: FaultProxy(p.name, split_hostport(p.listen), split_hostport(p.upstream))
            for p in spec.proxies
        }
        self._client: httpx.AsyncClient | None = None
        self._planners: dict[str, Callable[[FaultSpec], Fault]] = {
            "process_kill": self._plan_kill,
            "process_pause": self._plan_pause,
            "network_latency": self._plan_latency,
            "connection_reset": self._plan_reset,
            "cpu_stress": self._plan_cpu,
        }
        self._netems: list[Netem] = []
        self._own_clients: list[httpx.AsyncClient] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []

    # -- Platform protocol

    async def verify(self) -> None:
        """Read-only checks that need the machine (root, tc, interfaces); touches nothing."""
        for netem in self._netems:
            await netem.preflight()

    async def prepare(self) -> None:
        await self.verify()
        started: list[FaultProxy] = []
        try:
            for proxy in self.proxies.values():
                await proxy.start()
                started.append(proxy)
        except Exception:
            for proxy in started:
                await proxy.stop()
            raise

    async def plan_fault(self, spec: FaultSpec) -> Fault:
        fault = self._planners[spec.kind](spec)
        if isinstance(fault, _Base):
            fault.grace = self.experiment.spec.limits.expiry_grace
            fault.tag = f"{self.run_id}/{spec.name}"
        return fault

    def probe(self, spec: ProbeSpec) -> Probe:
        if spec.http is not None:
            if not spec.http.verify_tls:
                # The shared client verifies TLS; a probe that opts out gets its own.
                own = httpx.AsyncClient(verify=False, trust_env=False)
                self._own_clients.append(own)
                return HttpProbeDriver(spec, own)
            return HttpProbeDriver(spec, self.client)
        if spec.prometheus is not None:
            from chaos.probes.prometheus import PrometheusProbeDriver

            driver = PrometheusProbeDriver(spec, self.client)
            if driver.owns_client:
                self._closers.append(driver.aclose)
            return driver
        if spec.tcp is not None:
            return TcpProbeDriver(spec)
        return CommandProbeDriver(spec)

    async def run_rollback(self, spec: RollbackSpec) -> str:
        if spec.command is not None:
            c = spec.command
            result = await run_argv(list(c.argv), timeout=c.timeout, env=dict(c.env) or None,
                                    cwd=c.cwd)
            if result.timed_out:
                raise PlatformError(f"{c.argv[0]} timed out after {c.timeout:g}s")
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip()[-300:]
                raise PlatformError(f"{c.argv[0]} exited with {result.returncode}: {tail}")
            return f"exit 0 in {result.duration:.2f}s"
        assert spec.http is not None
        h = spec.http
        try:
            response = await self.client.request(h.method, h.url, headers=h.headers,
                                                  content=h.body, timeout=h.timeout)
        except httpx.HTTPError as exc:
            raise PlatformError(f"{h.method} {h.url} failed: {exc or type(exc).__name__}") from exc
        if response.status_code not in h.expect_status:
            raise PlatformError(f"{h.method} {h.url} answered {response.status_code}")
        return f"{h.method} {h.url} -> {response.status_code}"

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

    # -- helpers

    @property
    def client(self) -> httpx.AsyncClient:
        """One HTTP client for every probe and rollback of the run, closed in ``close``."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                trust_env=False,
            )
        return self._client

    def _limit(self) -> int:
        return self.experiment.spec.limits.max_processes

    def _plan_kill(self, spec: FaultSpec) -> Fault:
        params = spec.process_kill
        assert params is not None
        return ProcessKillFault(spec, params, resolve_processes(params.target, self._limit()))

    def _plan_pause(self, spec: FaultSpec) -> Fault:
        params: ProcessPause | None = spec.process_pause
        assert params is not None
        return ProcessPauseFault(spec, resolve_processes(params.target, self._limit()))

    def _plan_latency(self, spec: FaultSpec) -> Fault:
        params = spec.network_latency
        assert params is not None
        if params.proxy is not None:
            return ProxyFault(spec, self.proxies[params.proxy], params)
        assert params.interface is not None
        netem = Netem(params.interface, netns=params.netns, delay=params.delay,
                      jitter=params.jitter,
                      correlation=None if params.correlation is None else params.correlation * 100)
        self._netems.append(netem)
        return NetemFault(spec, netem)

    def _plan_reset(self, spec: FaultSpec) -> Fault:
        params = spec.connection_reset
        assert params is not None
        return ProxyFault(spec, self.proxies[params.proxy], params)

    def _plan_cpu(self, spec: FaultSpec) -> Fault:
        params = spec.cpu_stress
        assert params is not None
        return CpuStressFault(spec, params)
