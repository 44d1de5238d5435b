"""Load -> wire -> run -> render -> exit code, shared by ``chaos run`` and ``chaos demo``."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.errors import InvalidInput

# The engine, structlog, the models and the reports are imported in the function that needs them,
# so `chaos report`, `chaos recover` and a dry run load only their part (CLI start-up).
if TYPE_CHECKING:
    from chaos.journal.record import RunRecord
    from chaos.model.experiment import Experiment
    from chaos.targets.kubernetes import KubePlatform
    from chaos.targets.local import LocalPlatform


@dataclass
class RunArgs:
    experiment: Path
    journal: Path | None = None
    dry_run: bool = False
    log_format: str = "auto"
    verbose: bool = False
    probes_dirs: list[Path] | None = None
    run_id: str | None = None
    state_dir: Path | None = None
    kube: KubeArgs | None = None
    report_html: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None
    pushgateway: str | None = None
    metric_labels: dict[str, str] | None = None


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a journal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class KubeArgs:
    kubeconfig: str | None = None
    context: str | None = None


def _platform(experiment: Experiment, run_id: str = "-",
              kube: KubeArgs | None = None) -> LocalPlatform | KubePlatform:
    from chaos.targets.local import LocalPlatform  # lazy: pulls in the proxy

    local = LocalPlatform(experiment, run_id)
    if experiment.spec.target.platform == "local":
        return local
    from chaos.platform.kubernetes import KubeClient
    from chaos.targets.kubernetes import KubePlatform

    kube = kube or KubeArgs()

    async def connect() -> KubeClient:
        return await KubeClient.connect(kube.kubeconfig, kube.context)

    return KubePlatform(experiment, run_id, connect=connect, local=local)


async def plan(experiment: Experiment, kube: KubeArgs | None = None) -> str:
    from chaos.reporting.summary import render_plan

    platform = _platform(experiment, kube=kube)
    try:
        faults = []
        for fspec in experiment.spec.faults:
            fault = await platform.plan_fault(fspec)
            faults.append((fspec.name, fault.describe(), fault.targets()))
        await platform.preflight()
    finally:
        await platform.close()
    return render_plan(experiment, faults)


def execute(args: RunArgs) -> int:
    """Run (or plan) one experiment from the CLI; returns the documented exit code."""
    import asyncio

    from chaos.model.loader import load_experiment

    experiment = load_experiment(args.experiment, probes_dirs=args.probes_dirs)
    check_environment(experiment)  # a missing token is exit 2, before anything
    from chaos import redact  # the run's secrets, masked in every detail it writes

    redact.activate(redact.Redactor.for_run(experiment, os.environ, urls=[args.pushgateway]))
    if args.dry_run:
        # What a run would touch, with the same secrets masked as a run's outputs.
        print(redact.current().text(asyncio.run(plan(experiment, args.kube))))
        return 0

    run_id = args.run_id or new_run_id()
    args.journal, args.report_html, args.junit, args.markdown = (
        output_path(p, run_id) for p in (args.journal, args.report_html, args.junit,
                                         args.markdown))
    for path in (args.journal, args.report_html, args.junit, args.markdown):
        if path is not None:
            check_writable(path)  # a read-only or missing folder is exit 2, before anything

    import structlog

    from chaos.cli.output import CliObserver, LiveLine, configure_logging
    from chaos.engine.orchestrator import Orchestrator, RunOptions
    from chaos.journal.wal import Journal, StateDir, TargetLocks, check_no_outstanding
    from chaos.reporting.summary import render_summary

    console = configure_logging(args.log_format, args.verbose)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(run_id=run_id, experiment=experiment.metadata.name)
    live = LiveLine(sys.stderr) if console and sys.stderr.isatty() else None
    observer = CliObserver(experiment, live)
    journal = args.journal

    def persist(record: RunRecord) -> None:
        if journal is not None:
            write_atomically(journal, record.to_json())

    platform = _platform(experiment, run_id, args.kube)
    state = StateDir(args.state_dir)
    fault_journal = Journal(state, run_id)
    locks = TargetLocks(state)

    def claim(keys: list[str]) -> None:
        for bad in check_no_outstanding(state, keys):
            print(f"warning: journal {bad.journal.name} cannot be trusted ({bad.why}); moved "
                  f"to {bad.moved_to}: run `chaos recover` and check by hand what it may "
                  "have left", file=sys.stderr)
        locks.acquire(keys)

    orchestrator = Orchestrator(
        experiment,
        platform,
        RunOptions(run_id=run_id, experiment_file=str(args.experiment), observer=observer,
                   persist=persist, fault_log=fault_journal, claim_targets=claim,
                   release_targets=locks.release),
    )

    async def main() -> RunRecord:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, orchestrator.interrupt, sig.name)
        try:
            return await orchestrator.run()
        finally:
            from chaos.cli import install_interrupt_handlers

            # Swap the run's handlers for the outside-a-run ones with the signals blocked, so
            # one arriving in between waits for the new handler instead of the default.
            both = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, both)
            try:
                for sig in both:
                    loop.remove_signal_handler(sig)
                install_interrupt_handlers()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, both)

    try:
        record = asyncio.run(main())
    finally:
        fault_journal.close()
        locks.release()
    observer.close()
    code = record.exit_code if record.exit_code is not None else 1
    print(render_summary(record, experiment, str(journal) if journal else None))
    if code == 4:
        print_manual_undo(record)
    write_reports(record, args)
    if args.pushgateway:
        push_metrics(record, args.pushgateway, args.metric_labels or {})
    return code


def check_environment(experiment: Experiment) -> None:
    """What the probes read from the environment (credentials) is there: an input problem,
    exit 2, found before anything is touched."""
    import os

    problems = [p for spec in experiment.spec.probes
                for p in spec.kind.check_env(spec.name, spec.params, os.environ)]
    if problems:
        raise InvalidInput(
            "; ".join(problems),
            hint="export the variables (or fix caFile) before `chaos run`; nothing was injected",
        )


def output_path(path: Path | None, run_id: str) -> Path | None:
    """An output path with ``{run_id}`` and ``{time}`` (UTC, 20261201T223000Z) filled in, so a
    scheduled run keeps one file per run without a shell to compute the name."""
    if path is None:
        return None
    import datetime as dt

    now = dt.datetime.now(tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(str(path).replace("{run_id}", run_id).replace("{time}", now))


def check_writable(path: Path) -> None:
    """The folder of an output file exists (or can be made) and takes a new file: otherwise the
    run would find out only at its end, or while faults are active."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc} (nothing was touched)",
                           hint="pick a writable folder") from None


def print_manual_undo(record: RunRecord) -> None:
    """On exit 4, on stderr: how to remove by hand each fault whose revert failed (or was not
    recorded), from the kind's own manual steps."""
    from chaos.errors import ChaosError
    from chaos.faults.registry import fault_kind

    for fault in record.faults:
        if not ((fault.revert_error and fault.outstanding) or fault.journal_error):
            continue
        kind = fault_kind(fault.kind)
        steps: list[str] = []
        if kind is not None:
            try:
                steps = kind.manual_undo(kind.load_state(fault.revert_state))
            except ChaosError:
                steps = []
        print(f"fault '{fault.name}' ({fault.kind}) on {', '.join(fault.targets) or '?'}: "
              "remove it by hand if it is still there:", file=sys.stderr)
        for step in steps or ["see runbooks/fault-left-behind.md"]:
            print(f"  {step}", file=sys.stderr)


def write_reports(record: RunRecord, args: RunArgs) -> None:
    """The reports asked for on the command line; a failure to write one is said, not fatal."""
    from chaos.reporting import render_html, render_junit, render_markdown

    for path, render in ((args.report_html, render_html), (args.junit, render_junit),
                         (args.markdown, render_markdown)):
        if path is None:
            continue
        try:
            write_atomically(path, render(record))
            print(f"report: {path}")
        except OSError as exc:
            print(f"error: cannot write report {path}: {exc.strerror}", file=sys.stderr)


def push_metrics(record: RunRecord, url: str, labels: dict[str, str]) -> None:
    """Push the run metrics; the run's exit code stays the run's, a push failure is said."""
    import asyncio

    from chaos import redact
    from chaos.errors import ChaosError
    from chaos.platform.pushgateway import push_run_metrics
    from chaos.reporting.metrics import render_run_metrics

    redactor = redact.current().extended(urls=[url])  # the gateway's userinfo never shows
    body = render_run_metrics(record, labels)
    try:
        asyncio.run(push_run_metrics(url, "chaos-runner", {"experiment": record.experiment},
                                     body))
        print(f"metrics: pushed to {redactor.url(url)}")
    except ChaosError as exc:
        print(f"error: pushing run metrics failed: {redactor.text(str(exc))}", file=sys.stderr)


def report(journal: Path, fmt: str, output: Path | None) -> int:
    """Render a saved journal as html, junit or markdown."""
    from chaos.journal.load import load_record
    from chaos.reporting import render_html, render_junit, render_markdown

    renderers = {"html": render_html, "junit": render_junit, "markdown": render_markdown}
    if fmt not in renderers:
        raise InvalidInput(f"--format must be one of {', '.join(renderers)}, not '{fmt}'")
    text = renderers[fmt](load_record(journal))
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        write_atomically(output, text)
        print(f"report: {output}")
    return 0


def recover(state_dir: Path | None, dry_run: bool, kube: KubeArgs | None = None,
            helper_image: str | None = None) -> int:
    """Revert what crashed runs left behind; 0 only when nothing is left. A journal that cannot
    be trusted is moved aside (runs/quarantine/) and reported, and the others are recovered;
    the exit code is then 4: what it held is unknown."""
    import asyncio
    import os

    from chaos.faults.recovery import KubeAccess, manual_steps, revert_outstanding
    from chaos.journal.wal import StateDir, append_to, scan

    state = StateDir(state_dir)
    runs, quarantined = scan(state)
    for bad in quarantined:
        print(f"journal {bad.journal.name} cannot be trusted ({bad.why}); moved to "
              f"{bad.moved_to}: check by hand what that run may have left "
              "(runbooks/fault-left-behind.md)", file=sys.stderr)
    if not runs and not quarantined:
        print(f"nothing to recover in {state.root}")
        return 0
    image = helper_image or os.environ.get("CHAOS_HELPER_IMAGE") or None
    access = KubeAccess(kube.kubeconfig if kube else None, kube.context if kube else None,
                        image)
    left = 0
    for run in runs:
        print(f"run {run.run_id} ({run.experiment or '?'}, started {run.started_at or '?'}) "
              f"left {len(run.outstanding)} fault(s):")
        for fault in run.outstanding:
            how = "applied" if fault.applied else "intent only (may be half applied)"
            print(f"  {fault.name} [{fault.kind}] {how}; targets: {', '.join(fault.targets)}")
            if dry_run:
                print(f"    would revert; by hand: {manual_steps(fault)}")
                continue
            result = asyncio.run(revert_outstanding(fault, kube=access))
            if result.ok:
                append_to(run.journal, "reverted", fault=fault.name, by="recover",
                          detail=result.detail)
                print(f"    reverted: {result.detail}")
            else:
                left += 1
                append_to(run.journal, "revert_failed", fault=fault.name, by="recover",
                          error=result.detail)
                print(f"    NOT reverted: {result.detail}", file=sys.stderr)
    if dry_run:
        return 0
    if left:
        print(f"{left} fault(s) could not be reverted; see above and runbooks/", file=sys.stderr)
        return 4
    if quarantined:
        print(f"{len(quarantined)} journal(s) quarantined; the others are recovered",
              file=sys.stderr)
        return 4
    print("recovered: nothing is left")
    return 0
