"""Helper containers: how a Kubernetes fault acts inside a pod without a daemon on the node.

A fault kind that runs in the target pods (``networkLatency``, ``cpuStress``) gives a
:class:`HelperPlan`: the script that applies its fault, the script that undoes it, the
securityContext each needs, and the words for its failure causes. This module adds one ephemeral
container per pod running that script, and observes it:

- The script speaks a small protocol on stdout, read back through the pod log API:
  ``chaos-runner: in-effect: WHAT`` once it has checked the fault is in place;
  ``chaos-runner: error: CODE: DETAIL`` (then exit 1) when it cannot apply it;
  ``chaos-runner: reverted: WHAT`` when it removed the fault (asked to, or at its deadline);
  it exits 0 after a revert. It takes the wall-clock ``deadline`` at which it removes the fault
  by itself (the dead-man's switch) and a ``start-by`` time after which it refuses to start (a
  kubelet that starts it late, after the run gave up on it, must not inject then).
- ``verify`` reads ``status.ephemeralContainerStatuses`` the way ``kubectl describe`` does and
  the log: running and confirmed is in effect; an image that cannot be pulled, a refused
  securityContext, or the script's own error is a cause in words, at once.
- Ephemeral containers cannot be removed, so ``undo`` adds a second, short container that sends
  SIGTERM to the first (they share the target container's process namespace); the first removes
  its fault, says ``reverted`` and exits 0. ``verify_undone`` waits for exactly that: the
  ``reverted`` line in its log (the first sign, since the kubelet reports a container's exit
  only at its next relist, up to a second later) or its exit 0 in the status. ``chaos
  recover`` uses the same ``undo`` from the journal's state.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaos.errors import ChaosError, FaultNotInEffect, InvalidInput, RevertFailed
from chaos.faults.contract import HelperPod, HelperState, PodNeeds, Seen, observe_until
from chaos.model.common import DEFAULT_HELPER_IMAGE

if TYPE_CHECKING:
    from chaos.faults.contract import KubeContext, RecoverContext
    from chaos.model.experiment import FaultSpec
    from chaos.platform.kubernetes import KubeClient, PodRef

#: Lines of the script protocol.
PREFIX = "chaos-runner:"
#: The default helper image is not published yet: refuse it at preflight with instructions.
HELPER_IMAGE_PUBLISHED = False
_LOG_BYTES = 16384
_POLL_S = 0.5
#: The revert is on the abort path: look at the helper more often while it removes its fault.
_UNDO_POLL_S = 0.1
_CONCURRENCY = 16
_IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                            "ErrImageNeverPull", "RegistryUnavailable",
                            "SignatureValidationFailed"})
_CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError",
                             "RunContainerError", "PreStartHookError", "PostStartHookError"})
_SCRIPT_LINE = re.compile(rf"^{re.escape(PREFIX)} (in-effect|error|reverted|undone|expired): ?"
                          r"(.*)$", re.M)

#: Shell functions every helper script starts with.
SCRIPT_PRELUDE = f"""set -u
say() {{ echo "{PREFIX} $*"; }}
fail() {{ echo "{PREFIX} error: $1: $2"; exit 1; }}
now=$(date +%s)
[ "$now" -le "$START_BY" ] || fail late "started at $now, after its start-by time $START_BY \
(the kubelet started it late, or this node's clock is ahead)"
"""


def container_names(run_id: str, fault: str) -> tuple[str, str]:
    """The fault's helper container name and its undo container's, unique per run and fault,
    at most 63 characters (two faults of one kind on one pod never collide)."""
    stem = f"chaos-{run_id[:8]}-{fault}"
    if len(stem) > 58:
        digest = hashlib.sha256(fault.encode()).hexdigest()[:6]
        stem = f"chaos-{run_id[:8]}-{fault[:36].rstrip('-')}-{digest}"
    return stem, f"{stem}-undo"


def token(container: str) -> str:
    """The extra argument the fault script runs with, so the undo container can find it."""
    return f"chaos-fault-{container}"


def undo_script(container: str, belt: str = "") -> str:
    """The undo container's script: SIGTERM the fault script (it removes its fault and exits 0),
    wait for it to end, then ``belt`` (a last removal, for a fault script killed hard)."""
    # The [-] keeps this script's own command line from matching the pattern; the $ keeps a
    # second fault's helper on the same pod (a longer name) from matching it.
    pattern = shlex.quote(f"chaos-fault[-]{container}$")
    return f"""set -u
say() {{ echo "{PREFIX} $*"; }}
if pkill -TERM -f {pattern}; then
  i=0
  while pgrep -f {pattern} >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -ge 100 ] && {{ say "error: still-running: the fault helper did not stop within 10s"; \
exit 1; }}
    sleep 0.1
  done
  say "undone: the fault helper stopped"
else
  say "undone: no fault helper was running"
fi
{belt}
exit 0
"""


# ------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class HelperPlan:
    """What a kind gives to run its fault in helper containers."""

    image: str
    #: The fault script body; the prelude before it defines DEADLINE and START_BY (epoch
    #: seconds), ``say`` and ``fail``.
    script: str
    #: What the undo container does after the fault script stopped (a last removal).
    belt: str
    security: Mapping[str, Any]
    undo_security: Mapping[str, Any]
    needs: PodNeeds
    #: Script error codes -> (cause, hint) in the operator's words.
    causes: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)


def describe_pod(pod: PodRef | HelperPod) -> str:
    return f"pod {pod.namespace}/{pod.name}"


def _container_spec(name: str, image: str, script: str, arg0: str,
                    security: Mapping[str, Any], target: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": ["sh", "-c", script, arg0],
        "imagePullPolicy": "IfNotPresent",
        "securityContext": dict(security),
        # On a failure the kubelet copies the log's tail into the status: the cause survives
        # even where the log API cannot be read.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if target:
        # Share the target container's process namespace, so the undo container can reach the
        # fault script; the network namespace is the pod's anyway.
        spec["targetContainerName"] = target
    return spec


def _status(obj: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for status in obj.get("status", {}).get("ephemeralContainerStatuses") or []:
        if isinstance(status, dict) and status.get("name") == name:
            return status
    return None


def _in_spec(obj: Mapping[str, Any], name: str) -> bool:
    return any(isinstance(c, dict) and c.get("name") == name
               for c in obj.get("spec", {}).get("ephemeralContainers") or [])


def script_lines(log: str) -> list[tuple[str, str]]:
    """The protocol lines of a helper's log: (what, rest), oldest first."""
    return [(m.group(1), m.group(2).strip()) for m in _SCRIPT_LINE.finditer(log)]


def _state_of(status: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    state = status.get("state") or {}
    for key in ("terminated", "running", "waiting"):
        if key in state:
            return key, state.get(key) or {}
    return "unknown", {}


Announce = Callable[[list["PodRef"], str, str], Awaitable[None]]


@dataclass
class Helper:
    """The helper containers of one fault across its pods."""

    fault: str
    pods: list[HelperPod]
    container: str
    undo_container: str
    plan: HelperPlan
    #: Events naming the pods (one per workload); None in recovery.
    announce: Announce | None = None
    #: The pods as planned, by uid (their owners name the workload in Events).
    refs: dict[str, PodRef] = field(default_factory=dict)
    deadline: float = 0.0
    start_by: float = 0.0

    @property
    def state(self) -> HelperState:
        return HelperState(pods=self.pods, container=self.container,
                           undo_container=self.undo_container, image=self.plan.image)

    def _script(self) -> str:
        return (f"DEADLINE={int(self.deadline)}\nSTART_BY={int(self.start_by)}\n"
                f"{SCRIPT_PRELUDE}{self.plan.script}")

    def fault_container(self, pod: HelperPod) -> dict[str, Any]:
        return _container_spec(self.container, self.plan.image, self._script(),
                               token(self.container), self.plan.security, pod.target)

    # -- preflight --------------------------------------------------------------------------

    async def preflight(self, client: KubeClient, refs: Mapping[str, PodRef]) -> None:
        """Refuse, before anything is touched: the unpublished default image, pods whose declared
        policy forbids what the helper needs, and any admission refusal (Pod Security, SCC,
        webhooks) found by a dry-run of the exact container the inject will add."""
        needs = self.plan.needs
        if self.plan.image == DEFAULT_HELPER_IMAGE and not HELPER_IMAGE_PUBLISHED:
            raise InvalidInput(
                f"fault '{self.fault}' would run the helper image {DEFAULT_HELPER_IMAGE}, "
                "which is not published yet",
                hint="build docker/helper.Dockerfile, push it to a registry your nodes pull "
                "from, and set `image:` on the fault (see docs/kubernetes.md, Requirements)",
            )
        problems: list[str] = []
        for pod in self.pods:
            obj = await client.pod_object(refs[pod.uid])
            if needs.root and _runs_as_non_root(obj, pod.target):
                problems.append(
                    f"{describe_pod(pod)} runs as non-root (runAsNonRoot: true); {needs.why}, "
                    "which would break the pod's declared policy")
            phase = obj.get("status", {}).get("phase")
            if phase != "Running":
                problems.append(f"{describe_pod(pod)} is {phase or 'not running'}; a helper "
                                "container starts only in a running pod")
        if problems:
            raise InvalidInput(
                f"fault '{self.fault}' cannot run its helper: " + "; ".join(problems),
                hint="pick other pods with the selector, or use a fault that needs no helper "
                "(a proxy latency fault needs no root)",
            )
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def dry_run(pod: HelperPod) -> None:
            async with gate:
                try:
                    await client.add_ephemeral_container(
                        refs[pod.uid], self.fault_container(pod), dry_run=True)
                except ChaosError as exc:
                    raise InvalidInput(
                        f"fault '{self.fault}': the API server refuses the helper container "
                        f"for {describe_pod(pod)} (a dry-run; nothing was changed): {exc.message}",
                        hint=_admission_hint(exc.message, needs, self.container) or exc.hint,
                    ) from exc

        await asyncio.gather(*(dry_run(p) for p in self.pods))

    # -- inject / verify --------------------------------------------------------------------

    async def add(self, client: KubeClient, refs: Mapping[str, PodRef], duration: float,
                  verify_within: float) -> None:
        import time

        now = time.time()
        self.deadline = now + duration
        # A kubelet that starts the helper after the run stopped waiting for it must not inject.
        self.start_by = now + verify_within + 30
        done: list[PodRef] = []
        try:
            for pod in self.pods:
                await client.add_ephemeral_container(refs[pod.uid], self.fault_container(pod))
                done.append(refs[pod.uid])
        finally:
            if done and self.announce is not None:
                await self.announce(done, "injected",
                                    f"added helper container {self.container} to")

    async def verify(self, client: KubeClient, refs: Mapping[str, PodRef], within: float) -> str:
        results = await asyncio.gather(
            *(self._verify_pod(client, refs[p.uid], p, within) for p in self.pods))
        return f"{len(results)} pod(s): " + "; ".join(results[:3]) + (
            " ..." if len(results) > 3 else "")

    async def _verify_pod(self, client: KubeClient, ref: PodRef, pod: HelperPod,
                          within: float) -> str:
        from chaos.platform.kubernetes import NotFound

        where = describe_pod(pod)

        async def look() -> Seen:
            try:
                obj = await client.pod_object(ref)
            except NotFound:
                raise FaultNotInEffect(f"{where} was deleted or replaced before the fault took "
                                       "effect") from None
            status = _status(obj, self.container)
            if status is None:
                phase = obj.get("status", {}).get("phase")
                if phase in ("Succeeded", "Failed"):
                    raise FaultNotInEffect(f"{where} has ended ({phase}); the helper cannot run")
                return Seen(False, f"{where}: no kubelet has reported the helper container "
                            f"{self.container} yet (pod {phase or 'phase unknown'}, node "
                            f"{obj.get('spec', {}).get('nodeName') or 'none'})")
            state, info = _state_of(status)
            if state == "waiting":
                self._raise_waiting(where, info)
                return Seen(False, f"{where}: helper waiting ({info.get('reason', '?')})")
            log, log_error = await self._log(client, ref)
            lines = script_lines(log + "\n" + str(info.get("message", "")))
            for what, rest in lines:
                if what == "error":
                    self._raise_script_error(where, rest)
            for what, rest in lines:
                if what == "in-effect":
                    return Seen(True, f"{where}: {rest}")
            if state == "terminated":
                code = info.get("exitCode")
                tail = (str(info.get("message") or log).strip().splitlines() or ["no output"])[-1]
                raise FaultNotInEffect(
                    f"{where}: the helper container exited (code {code}, "
                    f"{info.get('reason', '?')}) without confirming the fault: {tail}")
            why = f" (its log could not be read: {log_error})" if log_error else ""
            return Seen(False, f"{where}: helper running, not confirmed yet{why}")

        return await observe_until(within, look, what=f"the fault in {where}",
                                   interval=_POLL_S)

    async def _log(self, client: KubeClient, ref: PodRef) -> tuple[str, str | None]:
        """The helper's log, or why it could not be read (a container just starting has
        none yet: the status says the rest)."""
        try:
            return await client.pod_log(ref, self.container, limit_bytes=_LOG_BYTES), None
        except ChaosError as exc:
            if getattr(exc, "status", None) == 403:
                raise FaultNotInEffect(
                    f"cannot read the helper's log to confirm the fault: {exc.message}",
                    hint="grant `get` on pods/log in the target namespace (chaos plan prints "
                    "the rules)") from exc
            return "", exc.message

    def _raise_waiting(self, where: str, info: Mapping[str, Any]) -> None:
        reason = str(info.get("reason", ""))
        message = str(info.get("message", "")).strip()
        if reason in _IMAGE_REASONS:
            raise FaultNotInEffect(
                f"{where}: the helper image {self.plan.image} could not be pulled "
                f"({reason}): {message or 'no detail'}",
                hint="build docker/helper.Dockerfile, push it to a registry the nodes can pull "
                "from (with an imagePullSecret on the pod if it is private), and set `image:`")
        if reason in _CONFIG_REASONS:
            lowered = message.lower()
            if "non-root" in lowered or "runasnonroot" in lowered:
                raise FaultNotInEffect(
                    f"{where}: the pod runs as non-root; {self.plan.needs.why} "
                    f"({reason}: {message})")
            raise FaultNotInEffect(f"{where}: the kubelet could not start the helper "
                                   f"({reason}): {message or 'no detail'}")

    def _raise_script_error(self, where: str, rest: str) -> None:
        code, _, detail = rest.partition(":")
        code = code.strip()
        if code == "late":
            raise FaultNotInEffect(f"{where}: the helper {detail.strip()}",
                                   hint="check the node's clock (NTP); nothing was injected "
                                   "by this helper")
        cause, hint = self.plan.causes.get(code, (f"the helper failed ({code})", None))
        raise FaultNotInEffect(f"{where}: {cause}: {detail.strip()}", hint=hint)

    # -- undo -------------------------------------------------------------------------------

    async def undo(self, client: KubeClient) -> list[str]:
        """Add the undo container to every pod that has the fault container and no undo yet;
        the revert and the recovery routine. Returns the pods it was added to."""
        from chaos.platform.kubernetes import NotFound, PodRef

        errors: list[str] = []
        undone: list[PodRef] = []
        for pod in self.pods:
            ref = self.refs.get(pod.uid) or PodRef(pod.namespace, pod.name, pod.uid, None, None)
            try:
                obj = await client.pod_object(ref)
            except NotFound:
                continue  # the pod is gone, and its fault with it
            if not _in_spec(obj, self.container) or _in_spec(obj, self.undo_container):
                continue
            spec = _container_spec(self.undo_container, self.plan.image,
                                   undo_script(self.container, self.plan.belt), "chaos-undo",
                                   self.plan.undo_security, pod.target)
            try:
                await client.add_ephemeral_container(ref, spec)
            except NotFound:
                continue
            except ChaosError as exc:
                errors.append(f"{describe_pod(pod)}: {exc.message}")
                continue
            undone.append(ref)
        if undone and self.announce is not None:
            await self.announce(undone, "reverted",
                                f"added undo container {self.undo_container} to")
        if errors:
            raise RevertFailed("could not add the undo container: " + "; ".join(errors),
                               hint="the fault still ends by itself at its deadline")
        return [f"{p.namespace}/{p.name}" for p in undone]

    async def verify_undone(self, client: KubeClient, within: float) -> str:
        results = await asyncio.gather(*(self._undone(client, p, within) for p in self.pods))
        return "; ".join(results[:3]) + (" ..." if len(results) > 3 else "")

    async def _undone(self, client: KubeClient, pod: HelperPod, within: float) -> str:
        from chaos.platform.kubernetes import NotFound, PodRef

        ref = PodRef(pod.namespace, pod.name, pod.uid, None, None)
        where = describe_pod(pod)

        async def look() -> Seen:
            try:
                obj = await client.pod_object(ref)
            except NotFound:
                return Seen(True, f"{where} is gone, and its fault with it")
            status = _status(obj, self.container)
            if not _in_spec(obj, self.container):
                return Seen(True, f"{where}: the helper was never added")
            if status is None:
                return Seen(False, f"{where}: no status for the helper container yet")
            state, info = _state_of(status)
            if state == "waiting":
                return Seen(True, f"{where}: the helper never started ({info.get('reason')}); "
                            "it refuses to start after its start-by time")
            if state == "terminated":
                code = info.get("exitCode")
                if code == 0:
                    return Seen(True, f"{where}: the helper removed the fault and exited 0")
                log, _ = await self._log(client, ref)
                # The log, or where it cannot be read, the kubelet's copy of its tail.
                lines = script_lines(log if log.strip() else str(info.get("message", "")))
                whats = [what for what, _ in lines]
                if "in-effect" not in whats:
                    # It failed before applying anything (its exit is that failure's).
                    error = next((rest for what, rest in lines if what == "error"), "")
                    return Seen(True, f"{where}: the helper never applied the fault "
                                f"(exit {code}{': ' + error if error else ''})")
                after = lines[len(whats) - whats[::-1].index("in-effect"):]
                if after:
                    # The script ended its fault itself (its stressor died, say) and said so.
                    what, rest = after[-1]
                    return Seen(True, f"{where}: the helper ended its fault itself (exit {code}, "
                                f"{what}: {rest})")
                tail = (log.strip().splitlines() or [str(info.get("message", ""))])[-1]
                raise RevertFailed(
                    f"{where}: the helper container was ended (code {code}) before it could "
                    f"remove the fault: {tail}",
                    hint="inspect the pod with kubectl describe; the fault may still be active")
            # Still running: its log says when it has removed the fault (it exits 0 right
            # after). The kubelet reports the exit only at its next relist (up to ~1 s later),
            # so the log is the first observation of the fault gone, as it is of the fault
            # in place.
            log, _ = await self._log(client, ref)
            lines = script_lines(log)
            whats = [what for what, _ in lines]
            after = lines[len(whats) - whats[::-1].index("in-effect"):] if "in-effect" in whats \
                else lines
            removed = [rest for what, rest in after if what == "reverted"]
            if removed:
                return Seen(True, f"{where}: the helper removed the fault ({removed[-1]}) and "
                            "is exiting")
            return Seen(False, f"{where}: the helper is still running")

        return await observe_until(within, look, what=f"the revert in {where}",
                                   interval=_UNDO_POLL_S, failure=RevertFailed)


def _runs_as_non_root(obj: Mapping[str, Any], target: str | None) -> bool:
    spec = obj.get("spec", {})
    pod_level = (spec.get("securityContext") or {}).get("runAsNonRoot")
    for container in spec.get("containers") or []:
        if isinstance(container, dict) and container.get("name") == target:
            own = (container.get("securityContext") or {}).get("runAsNonRoot")
            if own is not None:
                return bool(own)
    return bool(pod_level)


def _admission_hint(message: str, needs: PodNeeds, helper: str) -> str | None:
    if "violates PodSecurity" in message:
        if helper not in message:
            # Pod Security judges the whole pod on every update, ephemeral containers too.
            return ("the pod itself does not meet the namespace's Pod Security level (it was "
                    "admitted before the level was raised?), and the level is enforced on every "
                    "update of the pod, adding a helper container included; fix the pod, or "
                    "run the fault where the pods meet the level")
        return (f"the namespace's Pod Security level refuses the helper; {needs.why}, which "
                f"needs the '{needs.pod_security}' level: label the namespace "
                f"pod-security.kubernetes.io/enforce={needs.pod_security}, or use another fault")
    if "security context constraint" in message.lower():
        return ("OpenShift refused the helper: no SecurityContextConstraints available to the "
                f"pod's ServiceAccount allow it ({needs.why}); grant an SCC that does (for "
                "NET_ADMIN and uid 0, `privileged` or a custom one) to that ServiceAccount")
    if "autopilot" in message.lower() or "gke warden" in message.lower():
        return ("GKE Autopilot does not allow this helper container; use a proxy latency fault "
                "or a Standard cluster (docs/kubernetes.md, Requirements)")
    return None


def helper_for(ctx: KubeContext, spec: FaultSpec, pods: Sequence[PodRef],
               targets: Mapping[str, str | None], plan: HelperPlan) -> Helper:
    container, undo = container_names(ctx.run_id, spec.name)
    helper_pods = [HelperPod(namespace=p.namespace, name=p.name, uid=p.uid,
                             target=targets.get(p.uid)) for p in pods]

    async def announce(pods: list[PodRef], what: str, done: str) -> None:
        await ctx.announce(spec, pods, what, done)

    return Helper(spec.name, helper_pods, container, undo, plan, announce,
                  {p.uid: p for p in pods})


def need_image(ctx: RecoverContext) -> str:
    """The helper image for an undo container in `chaos recover`: from the configuration only.
    An image named in a journal is not trusted (whoever could write the file would choose what
    runs, as root with NET_ADMIN for netem, in production pods)."""
    if not ctx.helper_image:
        raise RevertFailed(
            "chaos recover needs the helper image to add the undo container, and does not take "
            "it from the journal",
            hint="pass --helper-image IMAGE (or set $CHAOS_HELPER_IMAGE), the image your runs use",
        )
    return ctx.helper_image


def recovered(state: HelperState, plan: HelperPlan) -> Helper:
    """The helper of a crashed run's fault, for ``chaos recover``: undo it from the journal."""
    return Helper(state.container.removeprefix("chaos-"), list(state.pods), state.container,
                  state.undo_container, plan)


#: How long ``chaos recover`` waits to see a crashed run's helper remove its fault.
RECOVER_VERIFY_S = 60.0


async def recover_helper(state: HelperState, plan: HelperPlan, client: KubeClient) -> str:
    """``chaos recover`` for a helper fault: add the undo container where the fault container
    has none yet, then see every helper remove its fault (or the pod gone). It never says a
    fault is gone that it has not seen gone: a helper still running after the wait raises
    ``RevertFailed``."""
    helper = recovered(state, plan)
    done = await helper.undo(client)
    seen = await helper.verify_undone(client, RECOVER_VERIFY_S)
    added = (f"added the undo container to {len(done)} pod(s)" if done
             else "no pod still had the fault without its undo container")
    return f"{added}; seen: {seen}"


def manual_steps(state: HelperState, command: str, *, profile: str = "general") -> list[str]:
    """``kubectl debug`` commands that run ``command`` next to each pod's fault helper. The
    image is left for the person to fill in: one named in a journal is not trusted."""
    return [
        f"kubectl -n {p.namespace} debug pod/{p.name} --image=$CHAOS_HELPER_IMAGE "
        f"--profile={profile}{f' --target={p.target}' if p.target else ''} -- {command}"
        for p in state.pods
    ]


async def target_containers(client: KubeClient, pods: Sequence[PodRef],
                            container: str | None) -> dict[str, str | None]:
    """The container each helper joins: the one named in the fault, checked to exist, or the
    pod's first container; fixed at plan time so revert and recovery aim at the same one."""
    targets: dict[str, str | None] = {}
    for pod in pods:
        obj = await client.pod_object(pod)
        names = [str(c.get("name")) for c in obj.get("spec", {}).get("containers") or []
                 if isinstance(c, dict)]
        if container is not None and container not in names:
            raise InvalidInput(
                f"pod {pod.namespace}/{pod.name} has no container '{container}' "
                f"(it has: {', '.join(names) or 'none'})",
                hint="fix `container:` in the fault, or leave it out to use the first container",
            )
        targets[pod.uid] = container or (names[0] if names else None)
    return targets


__all__ = [
    "HELPER_IMAGE_PUBLISHED",
    "PREFIX",
    "SCRIPT_PRELUDE",
    "Helper",
    "HelperPlan",
    "HelperPod",
    "HelperState",
    "container_names",
    "helper_for",
    "manual_steps",
    "need_image",
    "recovered",
    "script_lines",
    "target_containers",
    "token",
    "undo_script",
]
