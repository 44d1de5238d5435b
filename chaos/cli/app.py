"""The ``chaos`` command line: parse -> load -> wire -> run -> render -> exit code.

Exit codes (stable, for CI): 0 passed, 1 deviated, 2 invalid input (nothing injected), 3 aborted
by the SLO guard (every fault reverted), 4 a revert failed, 130 interrupted (every fault reverted).
"""

# No ``from __future__ import annotations`` here: typer reads every command's annotations when it
# builds the CLI, and string annotations would all be eval'd on each start (~5 ms).
# Only light modules at the top: heavy ones (pydantic models, the engine, httpx, structlog) are
# imported inside the command that needs them, so `--help` and `validate` start fast.
import sys
from pathlib import Path
from typing import Annotated

import typer

from chaos import __version__
from chaos.errors import ChaosError, InvalidInput

app = typer.Typer(
    name="chaos",
    help="A careful chaos-engineering experiment runner: SLO-guarded faults that always revert.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
demo_app = typer.Typer(help="The built-in demo service and its experiments (no cluster needed).",
                       no_args_is_help=False, invoke_without_command=True)
app.add_typer(demo_app, name="demo")

ExperimentArg = Annotated[Path, typer.Argument(help="experiment YAML file", show_default=False)]
ProbesDirOpt = Annotated[
    list[Path] | None,
    typer.Option("--probes-dir", envvar="CHAOS_PROBES_DIR",
                 help="folder searched first for `use:` probe templates (repeatable; "
                      "$CHAOS_PROBES_DIR holds a colon-separated list)"),
]


KubeconfigOpt = Annotated[
    str | None, typer.Option("--kubeconfig", help="kubeconfig file (default $KUBECONFIG)")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context")]
StateDirOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="fault journals and locks (default $XDG_STATE_HOME/chaos)"),
]


def _fail(exc: ChaosError) -> None:
    from chaos.redact import current

    # Through the run's redactor once one is active (a preflight error quoting a URL or an
    # argv); before that, the default one still hides every URL's userinfo and query string.
    print(f"error: {current().text(str(exc))}", file=sys.stderr)
    # The numbers of chaos.journal.outcome.ExitCode (not imported: it is not needed to fail).
    raise typer.Exit(2 if isinstance(exc, InvalidInput) else 1)


@app.command()
def run(
    experiment: ExperimentArg,
    journal: Annotated[Path | None, typer.Option(help="write the run journal (JSON) here")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="plan only; touch nothing")] = False,
    log_format: Annotated[str, typer.Option(help="auto, console or json")] = "auto",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="log every probe sample")
    ] = False,
    probes_dir: ProbesDirOpt = None,
    state_dir: StateDirOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    report_html: Annotated[Path | None, typer.Option(help="write the HTML report here")] = None,
    junit: Annotated[Path | None, typer.Option(help="write JUnit XML here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="write a Markdown summary here")] = None,
    pushgateway: Annotated[
        str | None, typer.Option(help="push run metrics to this Prometheus Pushgateway URL")
    ] = None,
    metric_label: Annotated[
        list[str] | None, typer.Option(help="extra label for the run metrics, NAME=VALUE")
    ] = None,
) -> None:
    """Run an experiment: baseline, faults under the SLO guard, revert, recovery check."""
    if log_format not in ("auto", "console", "json"):
        _fail(InvalidInput(f"--log-format must be auto, console or json, not '{log_format}'"))
    if pushgateway is not None:
        from chaos.units import check_http_url

        try:
            check_http_url(pushgateway, "http://pushgateway:9091")
        except ValueError as exc:
            from chaos.redact import Redactor

            # The refused value may still carry a password: say it without one.
            said = Redactor(urls=[pushgateway]).text(str(exc))
            _fail(InvalidInput(f"--pushgateway must be an http(s) URL: {said}"))
    labels: dict[str, str] = {}
    for item in metric_label or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            _fail(InvalidInput(f"--metric-label must be NAME=VALUE, not '{item}'"))
        labels[name] = value
    # After the flag checks: a bad flag is reported without loading the engine.
    from chaos.cli.runner import KubeArgs, RunArgs, execute

    try:
        code = execute(RunArgs(experiment, journal, dry_run, log_format, verbose, probes_dir,
                               state_dir=state_dir, kube=KubeArgs(kubeconfig, context),
                               report_html=report_html, junit=junit, markdown=markdown,
                               pushgateway=pushgateway, metric_labels=labels))
    except ChaosError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command()
def plan(experiment: ExperimentArg, probes_dir: ProbesDirOpt = None,
         kubeconfig: KubeconfigOpt = None, context: ContextOpt = None) -> None:
    """Resolve targets and print exactly what a run would touch, touching nothing."""
    from chaos.cli.runner import KubeArgs, RunArgs, execute

    try:
        execute(RunArgs(experiment, dry_run=True, probes_dirs=probes_dir,
                        kube=KubeArgs(kubeconfig, context)))
    except ChaosError as exc:
        _fail(exc)


@app.command()
def validate(experiment: ExperimentArg, probes_dir: ProbesDirOpt = None) -> None:
    """Check an experiment file and report every problem as file:line:column."""
    from chaos.model.loader import load_experiment

    try:
        exp = load_experiment(experiment, probes_dirs=probes_dir)
    except ChaosError as exc:
        _fail(exc)
    print(f"{experiment}: valid ({exp.metadata.name}: {len(exp.spec.probes)} probes, "
          f"{len(exp.spec.slos)} SLOs, {len(exp.spec.faults)} faults)")


@app.command()
def recover(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be reverted")] = False,
    state_dir: StateDirOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    helper_image: Annotated[str | None, typer.Option(
        "--helper-image", help="image of the undo containers (default $CHAOS_HELPER_IMAGE; "
        "never read from a journal)")] = None,
) -> None:
    """Revert every fault that a killed or failed run left behind. Exit 0 when nothing is left."""
    from chaos.cli.runner import KubeArgs
    from chaos.cli.runner import recover as do_recover

    try:
        code = do_recover(state_dir, dry_run, KubeArgs(kubeconfig, context), helper_image)
    except ChaosError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command()
def report(
    journal: Annotated[Path, typer.Argument(help="a run journal written by --journal")],
    format: Annotated[str, typer.Option("--format", "-f", help="html, junit or markdown")] = (
        "markdown"
    ),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write")] = None,
) -> None:
    """Render a saved run journal as an HTML report, JUnit XML or Markdown."""
    from chaos.cli.runner import report as do_report

    try:
        code = do_report(journal, format, output)
    except ChaosError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the experiment format, for editors."""
    import json

    from chaos.model.experiment import Experiment

    data = Experiment.model_json_schema(by_alias=True)
    data["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    data["title"] = "chaos/v1 Experiment"
    print(json.dumps(data, indent=2))


@app.command()
def kinds(
    chart_rules: Annotated[bool, typer.Option(
        "--chart-rules", help="print the Role rules of each fault kind for the Helm chart (JSON)",
    )] = False,
) -> None:
    """List the fault kinds, probe kinds and SLO objectives this version knows."""
    from chaos.cli.kinds import render

    sys.stdout.write(render(chart_rules))


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


@demo_app.callback()
def demo_default(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--experiment", "-e",
                                      help="latency, kill or cpu")] = "latency",
) -> None:
    """Start the demo service and run a demo experiment against it (default: latency)."""
    if ctx.invoked_subcommand is not None:
        return
    from chaos.cli.demo import run_demo

    try:
        code = run_demo(name)
    except ChaosError as exc:
        _fail(exc)
    raise typer.Exit(code)


@demo_app.command("serve")
def demo_serve(
    port: Annotated[int, typer.Option(help="service port")] = 18080,
    state_dir: Annotated[Path, typer.Option(
        help="where pidfiles go: a private folder (0700; refused if another user owns it or "
        "can write it)")] = Path("~/.local/state/chaos-demo"),
) -> None:
    """Run the demo service under its supervisor in the foreground (Ctrl-C stops it)."""
    from chaos.demo.supervisor import main as supervise

    raise typer.Exit(supervise(["--port", str(port), "--state-dir", str(state_dir)]))


def main() -> None:
    app()
