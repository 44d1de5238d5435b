"""The Helm chart in charts/chaos-runner, proven with a helm built from source
(tests/cluster/build-helm.sh, or ``$CHAOS_HELM``) and against the real test control plane
(tests/k8s/conftest.py): lint and render over a matrix of values, server-side dry run, install,
a Job from a CronJob scheduled on a fake kwok node, the ServiceAccount's permissions checked with
the project's own SelfSubjectAccessReview code, and uninstall leaving nothing behind.

Without helm: skipped with a loud message, except in CI (``$CI`` set), where that fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.platform.kubernetes import AccessCheck, Forbidden, KubeClient

pytestmark = pytest.mark.k8s

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "chaos-runner"
BUILD_HELM = REPO_ROOT / "tests" / "cluster" / "build-helm.sh"
HELM_BUILD_TIMEOUT_S = float(os.environ.get("CHAOS_HELM_BUILD_TIMEOUT", "1800"))
HELM_TIMEOUT_S = 90.0
WAIT_S = 60.0
BANNER = "!" * 78
FAULTS = ("podKill", "podKillEviction", "networkLatency", "cpuStress")
RBAC_KINDS = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# ------------------------------------------------------------------------------------------------
# helm
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm_bin() -> str:
    env = os.environ.get("CHAOS_HELM")
    if env:
        path = Path(env).expanduser()
        if not os.access(path, os.X_OK):
            pytest.fail(f"CHAOS_HELM={env} is not an executable helm binary", pytrace=False)
        return str(path)
    message = ""
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_HELM)],
            capture_output=True,
            text=True,
            timeout=HELM_BUILD_TIMEOUT_S,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode == 0 and lines and os.access(Path(lines[-1]) / "helm", os.X_OK):
            return str(Path(lines[-1]) / "helm")
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        message = f"{BUILD_HELM.name} failed (exit {proc.returncode}):\n{tail}"
    except subprocess.TimeoutExpired:
        message = f"{BUILD_HELM.name} did not finish within {HELM_BUILD_TIMEOUT_S:.0f}s"
    if _in_ci():
        pytest.fail(f"no helm binary (CI): {message}", pytrace=False)
    pytest.skip(
        f"\n{BANNER}\nSKIPPING the Helm chart tests: no helm binary.\n{message}\n"
        f"Build it with tests/cluster/build-helm.sh (needs Go >= 1.26) or set CHAOS_HELM.\n{BANNER}"
    )


def run_cmd(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = HELM_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`{' '.join(args)}` failed ({proc.returncode})\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def write_values(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def helm_template(
    helm: str, values_file: Path, release: str = "gd", namespace: str = "chaos"
) -> list[dict[str, Any]]:
    out = run_cmd(
        [helm, "template", release, str(CHART), "-n", namespace, "-f", str(values_file)]
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


# ------------------------------------------------------------------------------------------------
# What the chart must grant: docs/kubernetes.md, "Permissions", written out independently
# ------------------------------------------------------------------------------------------------


def expected_rules(
    faults: set[str], *, workloads: bool = True, owners: bool = False
) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples."""
    rules = {
        ("", "pods", "list"),
        # its own Lease only (RBAC cannot narrow create by name)
        ("coordination.k8s.io", "leases#chaos-runner", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases#chaos-runner", "update"),
        ("coordination.k8s.io", "leases#chaos-runner", "delete"),
        ("events.k8s.io", "events", "create"),
    }
    if "podKill" in faults:
        rules.add(("", "pods", "delete"))
    if "podKillEviction" in faults:
        rules.add(("", "pods/eviction", "create"))
    if faults & {"networkLatency", "cpuStress"}:
        # read the pods, add the helper (and undo) container, read its log to confirm it
        rules |= {("", "pods", "get"), ("", "pods/ephemeralcontainers", "patch"),
                  ("", "pods/log", "get")}
    if workloads:
        rules |= {("apps", "deployments", "get"), ("apps", "statefulsets", "get")}
    if owners:
        rules.add(("apps", "replicasets", "list"))
    return rules


def flatten(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[#resourceName], verb) triples."""
    out: set[tuple[str, str, str]] = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "resourceNames", "verbs"}, rule  # no URLs
        names = rule.get("resourceNames") or [""]
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for n in names:
                    for v in rule["verbs"]:
                        assert "*" not in (g, r, v), rule
                        out.add((g, f"{r}#{n}" if n else r, v))
    return out


def triples_to_checks(triples: set[tuple[str, str, str]], ns: str) -> list[AccessCheck]:
    checks = []
    for group, named, verb in sorted(triples):
        resource, _, name = named.partition("#")
        res, _, sub = resource.partition("/")
        checks.append(AccessCheck(verb, res, ns, group, sub, name))
    return checks


def pod_kill_experiment(ns: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        (REPO_ROOT / "experiments" / "kubernetes" / "pod-kill.yaml").read_text()
    )
    doc["spec"]["target"]["namespace"] = ns
    return doc


def experiment_entry(name: str, namespaces: list[str], faults: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "schedule": "0 10 * * 2",
        "targetNamespaces": namespaces,
        "faults": faults,
        "experiment": pod_kill_experiment(namespaces[0]),
    }


# ------------------------------------------------------------------------------------------------
# lint + template over a matrix of values (no cluster needed)
# ------------------------------------------------------------------------------------------------

CASES: dict[str, dict[str, Any]] = {
    "inline": {"experiments": [experiment_entry("kill", ["shop"], ["podKill"])]},
    "existing-configmap": {
        "experiments": [
            {
                "name": "lat",
                "schedule": "*/30 * * * *",
                "timeZone": "Europe/Berlin",
                "targetNamespaces": ["shop"],
                "faults": ["networkLatency"],
                "existingConfigMap": {"name": "game-days", "key": "latency.yaml"},
            }
        ]
    },
    "persistence": {
        "experiments": [experiment_entry("evict", ["shop"], ["podKillEviction"])],
        "persistence": {"size": "2Gi", "storageClassName": "fast",
                        "accessModes": ["ReadWriteOncePod"],
                        "annotations": {"helm.sh/resource-policy": "keep"}},
        "ownerSelectors": True,
    },
    "no-storage-class": {
        "experiments": [experiment_entry("kill", ["shop"], ["podKill"])],
        "persistence": {"storageClassName": "-"},
    },
    "existing-claim": {
        "experiments": [experiment_entry("cpu", ["shop"], ["cpuStress"])],
        "persistence": {"existingClaim": "chaos-state"},
        "probes": {"workloads": False},
    },
    "emptydir": {
        "experiments": [experiment_entry("kill", ["shop"], ["podKill"])],
        "persistence": {"enabled": False},
    },
    "pushgateway": {
        "experiments": [experiment_entry("kill", ["shop"], ["podKill"])],
        "metrics": {"pushgateway": {"url": "http://pg.monitoring:9091", "labels": {"team": "pay"}}},
    },
    "two-namespaces": {
        "experiments": [
            experiment_entry("kill", ["shop", "cart"], ["podKill"]),
            experiment_entry("lat", ["cart"], ["networkLatency", "cpuStress"]),
        ]
    },
    "suspend": {
        "suspend": True,
        "experiments": [
            experiment_entry("kill", ["shop"], ["podKill"]),
            {**experiment_entry("evict", ["shop"], ["podKillEviction"]), "suspend": False},
        ],
    },
}


def _merged(case: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    merged = dict(defaults)
    for key, value in case.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            merged[key] = {**defaults[key], **value}
        else:
            merged[key] = value
    return merged


def test_chart_rules_are_generated_from_the_fault_registry() -> None:
    """The chart's per-fault rules (files/fault-rules.json) and the fault names its schema
    accepts are what the runner's kinds declare: a new kind, or a changed permission, without
    regenerating the file fails here. Regenerate with `chaos kinds --chart-rules`."""
    from chaos.cli.kinds import chart_rules
    from chaos.faults.registry import FAULT_KINDS

    committed = json.loads((CHART / "files" / "fault-rules.json").read_text())
    assert committed == chart_rules(), "run: chaos kinds --chart-rules > " \
        "charts/chaos-runner/files/fault-rules.json"
    names = {name for kind in FAULT_KINDS for name in kind.chart_variants}
    assert names == set(FAULTS) == set(committed["faults"])


def test_hostile_values_never_reach_a_shell(helm_bin: str, tmp_path: Path) -> None:
    """The chart quoted values with squote, which does not escape ', so a metric label value
    of '$(...)' ran a command in the runner pod. Now the container gets an argv."""
    hostile = "x'$(touch /tmp/pwned)'`id`;reboot"
    values = {"experiments": [experiment_entry("kill", ["shop"], ["podKill"])],
              "metrics": {"pushgateway": {"url": "http://pg:9091", "labels": {"team": hostile}}},
              "extraArgs": ["--metric-label", f"more={hostile}"]}
    docs = helm_template(helm_bin, write_values(tmp_path, values))
    (cron,) = [d for d in docs if d["kind"] == "CronJob"]
    argv = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert argv[0] == "chaos" and "/bin/sh" not in argv
    assert f"team={hostile}" in argv and f"more={hostile}" in argv


def test_the_helper_image_reaches_runs_and_recover_from_values(helm_bin: str,
                                                               tmp_path: Path) -> None:
    values = {"experiments": [experiment_entry("kill", ["shop"], ["networkLatency"])],
              "helperImage": "registry.local/chaos-runner/helper:0.1.0"}
    docs = helm_template(helm_bin, write_values(tmp_path, values))
    (cron,) = [d for d in docs if d["kind"] == "CronJob"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for container in (*pod["initContainers"], *pod["containers"]):
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["CHAOS_HELPER_IMAGE"] == "registry.local/chaos-runner/helper:0.1.0"


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_and_template(helm_bin: str, tmp_path: Path, case: str) -> None:
    values = CASES[case]
    v = _merged(values)
    vf = write_values(tmp_path, values)
    run_cmd([helm_bin, "lint", "--strict", str(CHART), "-f", str(vf)])
    docs = helm_template(helm_bin, vf)
    kinds = {d["kind"] for d in docs}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    assert all(d["metadata"].get("namespace") for d in docs), "every object is namespaced"

    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["metadata"]["namespace"] == "chaos"
    sa_name = sa["metadata"]["name"]

    # RBAC: per target namespace, exactly the union of the experiments' faults.
    want: dict[str, set[str]] = {}
    for exp in values["experiments"]:
        for ns in exp["targetNamespaces"]:
            want.setdefault(ns, set()).update(exp["faults"])
    roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in by_kind(docs, "RoleBinding")}
    assert set(roles) == set(want) == set(bindings)
    for ns, faults in want.items():
        got = flatten(roles[ns]["rules"])
        assert got == expected_rules(
            faults, workloads=v["probes"]["workloads"], owners=v["ownerSelectors"]
        ), (ns, faults)
        rb = bindings[ns]
        assert rb["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[ns]["metadata"]["name"],
        }
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": "chaos"}]

    # ConfigMap of the inline experiments.
    inline = [e for e in values["experiments"] if "experiment" in e]
    cms = by_kind(docs, "ConfigMap")
    if inline:
        (cm,) = cms
        assert set(cm["data"]) == {f"{e['name']}.yaml" for e in inline}
        for e in inline:
            assert yaml.safe_load(cm["data"][f"{e['name']}.yaml"]) == e["experiment"]
    else:
        assert cms == []

    # The state volume: a PersistentVolumeClaim unless persistence.enabled is false.
    pvcs = by_kind(docs, "PersistentVolumeClaim")
    persistence = v["persistence"]
    if persistence["enabled"] and not persistence["existingClaim"]:
        (pvc,) = pvcs
        assert pvc["metadata"]["name"] == "gd-chaos-runner-state"
        assert pvc["spec"]["resources"]["requests"]["storage"] == persistence["size"]
        assert pvc["spec"]["accessModes"] == persistence["accessModes"]
        assert pvc["metadata"].get("annotations", {}) == persistence["annotations"]
        cls = persistence["storageClassName"]
        if cls == "":
            assert "storageClassName" not in pvc["spec"]  # the cluster's default class
        else:
            assert pvc["spec"]["storageClassName"] == ("" if cls == "-" else cls)
    else:
        assert pvcs == []

    cronjobs = {
        c["metadata"]["labels"]["chaos-runner/experiment"]: c for c in by_kind(docs, "CronJob")
    }
    assert set(cronjobs) == {e["name"] for e in values["experiments"]}
    for exp in values["experiments"]:
        cj = cronjobs[exp["name"]]
        spec = cj["spec"]
        assert len(cj["metadata"]["name"]) <= 52
        assert spec["schedule"] == exp["schedule"]
        assert spec.get("timeZone") == exp.get("timeZone")
        assert spec["suspend"] is (v["suspend"] or exp.get("suspend", False))
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["startingDeadlineSeconds"] == 300
        assert spec["successfulJobsHistoryLimit"] == 3
        assert spec["failedJobsHistoryLimit"] == 3
        job = spec["jobTemplate"]["spec"]
        assert job["backoffLimit"] == 0
        assert job["activeDeadlineSeconds"] == 3600
        pod = job["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert pod["serviceAccountName"] == sa_name
        assert pod["terminationGracePeriodSeconds"] == 120
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        (init,) = pod["initContainers"]
        (main,) = pod["containers"]
        assert init["command"] == ["chaos", "recover", "--state-dir", "/var/lib/chaos/state"]
        for c in (init, main):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert c["image"] == "ghcr.io/chaos-runner/runner:0.1.0"
            assert c["resources"]["limits"] and c["resources"]["requests"]
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert mounts["/var/lib/chaos"] == "state" and mounts["/experiments"] == "experiments"
        # An argv, no shell: no value is ever parsed by a shell.
        argv = main["command"]
        name = exp["name"]
        assert argv[:5] == ["chaos", "run", f"/experiments/{name}.yaml", "--state-dir",
                            "/var/lib/chaos/state"]
        assert argv[5:9] == ["--journal", f"/var/lib/chaos/reports/{name}-{{time}}.json",
                             "--log-format", "json"]
        url = v["metrics"]["pushgateway"]["url"]
        if url:
            assert argv[9:13] == ["--pushgateway", url, "--metric-label", f"experiment={name}"]
            for k, val in v["metrics"]["pushgateway"]["labels"].items():
                i = argv.index(f"{k}={val}")
                assert argv[i - 1] == "--metric-label"
        else:
            assert "--pushgateway" not in argv and "--metric-label" not in argv
        vols = {vol["name"]: vol for vol in pod["volumes"]}
        if persistence["enabled"]:
            claim = persistence["existingClaim"] or pvcs[0]["metadata"]["name"]
            assert vols["state"]["persistentVolumeClaim"] == {"claimName": claim}
        else:
            assert vols["state"] == {"name": "state", "emptyDir": {}}
        cmv = vols["experiments"]["configMap"]
        if "experiment" in exp:
            assert cmv["name"] == cms[0]["metadata"]["name"]
            assert cmv["items"] == [{"key": f"{name}.yaml", "path": f"{name}.yaml"}]
        else:
            assert cmv["name"] == exp["existingConfigMap"]["name"]
            assert cmv["items"] == [
                {"key": exp["existingConfigMap"]["key"], "path": f"{name}.yaml"}
            ]


@pytest.mark.parametrize(
    "bad",
    [
        {"experiments": [{**experiment_entry("x", ["shop"], ["podKill"]), "faults": ["nuke"]}]},
        {
            "experiments": [
                {
                    **experiment_entry("x", ["shop"], ["podKill"]),
                    "existingConfigMap": {"name": "a", "key": "b"},
                }
            ]
        },
        {"experiments": [{"name": "x", "schedule": "* * * * *", "faults": ["podKill"]}]},
        {"experiments": [experiment_entry("Bad_Name", ["shop"], ["podKill"])]},
        {"image": {"repository": "x", "pullPolicy": "Sometimes"}},
        {"suspend": "yes"},
        # The old name of storageClassName: refused, not silently ignored.
        {"persistence": {"enabled": True, "storageClass": "fast"}},
        {"persistence": {"enabled": True, "accessModes": ["ReadWriteSometimes"]}},
    ],
    ids=[
        "unknown-fault",
        "inline-and-existing",
        "no-namespaces",
        "bad-name",
        "pull-policy",
        "suspend-str",
        "old-storage-class-key",
        "access-mode",
    ],
)
def test_schema_rejects_bad_values(helm_bin: str, tmp_path: Path, bad: dict[str, Any]) -> None:
    vf = write_values(tmp_path, bad)
    proc = run_cmd([helm_bin, "template", "gd", str(CHART), "-f", str(vf)], check=False)
    assert proc.returncode != 0
    if bad.get("experiments") and bad["experiments"][0].get("faults") == ["nuke"]:
        # Fault names come from the fault registry (files/fault-rules.json), not the schema.
        assert 'unknown fault "nuke"' in proc.stderr
        assert "cpuStress, networkLatency, podKill, podKillEviction" in proc.stderr
        return
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_defaults_render_the_service_account_and_the_state_claim(helm_bin: str) -> None:
    """The state volume is a PersistentVolumeClaim by default, so that the next Job's
    `chaos recover` finds what a killed run left; `persistence.enabled=false` (an emptyDir)
    renders none."""
    run_cmd([helm_bin, "lint", "--strict", str(CHART)])
    out = run_cmd([helm_bin, "template", "gd", str(CHART)]).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["kind"] for d in docs] == ["ServiceAccount", "PersistentVolumeClaim"]
    pvc = docs[1]
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"],
                           "resources": {"requests": {"storage": "1Gi"}}}
    out = run_cmd([helm_bin, "template", "gd", str(CHART), "--set",
                   "persistence.enabled=false"]).stdout
    assert [d["kind"] for d in yaml.safe_load_all(out) if d] == ["ServiceAccount"]


def test_notes_say_where_the_state_lives(helm_bin: str, kube_cluster: Any,
                                        tmp_path: Path) -> None:
    """NOTES.txt (rendered by install only; a client dry run still asks the cluster its
    version): the claim, or a warning that an emptyDir loses a killed run's journal."""
    env = {**os.environ, "KUBECONFIG": kube_cluster.kubeconfig,
           "HELM_CACHE_HOME": str(tmp_path / "hc"), "HELM_CONFIG_HOME": str(tmp_path / "hcfg"),
           "HELM_DATA_HOME": str(tmp_path / "hd")}
    values = {"experiments": [experiment_entry("kill", ["shop"], ["podKill"])]}
    for persistence, says in (({}, "State volume: PersistentVolumeClaim gd-chaos-runner-state"),
                              ({"enabled": False}, "WARNING: persistence.enabled=false")):
        vf = write_values(tmp_path, {**values, "persistence": persistence})
        notes = run_cmd([helm_bin, "install", "gd", str(CHART), "-n", "chaos", "-f", str(vf),
                         "--dry-run=client"], env=env).stdout
        assert says in notes, notes
        assert "create job --from=cronjob/gd-chaos-runner-kill" in notes


# ------------------------------------------------------------------------------------------------
# Against the test cluster
# ------------------------------------------------------------------------------------------------


def _wait(what: str, probe: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # reported on timeout
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})"
            )
        time.sleep(0.5)


@pytest.fixture
def namespaces(kube_cluster: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Release namespace, two target namespaces and a bystander; deleted afterwards. And the
    volume of release gd's state claim (persistence is on by default): this cluster has no
    provisioner, so a PersistentVolume bound to that claim, never mounted (kwok's nodes run no
    containers; the game day on the real node mounts one: tests/k8s/node/test_game_day.py)."""
    tag = uuid.uuid4().hex[:6]
    names = {k: f"h-{k}-{tag}" for k in ("chaos", "shop", "cart", "other")}
    for ns in names.values():
        kube_cluster.kubectl("create", "namespace", ns)
    pv = f"h-state-{tag}"
    pv_file = tmp_path / "pv.yaml"
    pv_file.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": str(tmp_path / "state"), "type": "DirectoryOrCreate"},
                 "claimRef": {"namespace": names["chaos"], "name": "gd-chaos-runner-state"}}}))
    kube_cluster.kubectl("apply", "-f", str(pv_file))
    try:
        yield names
    finally:
        for ns in names.values():
            kube_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kube_cluster.kubectl("delete", "pv", pv, "--ignore-not-found", "--wait=false",
                             check=False)


def test_install_run_permissions_uninstall(
    helm_bin: str, kube_cluster: Any, namespaces: dict[str, str], tmp_path: Path
) -> None:
    rel_ns, shop, cart, other = (namespaces[k] for k in ("chaos", "shop", "cart", "other"))
    release = "gd"
    values = {
        "experiments": [
            experiment_entry("kill", [shop, cart], ["podKill"]),
            experiment_entry("lat", [cart], ["networkLatency", "podKillEviction"]),
        ],
        "ownerSelectors": True,
        "nodeSelector": dict(kube_cluster.node_selector),
        "tolerations": list(kube_cluster.tolerations),
        "activeDeadlineSeconds": 600,
    }
    vf = write_values(tmp_path, values)
    env = {
        **os.environ,
        "KUBECONFIG": kube_cluster.kubeconfig,
        "HELM_CACHE_HOME": str(tmp_path / "hc"),
        "HELM_CONFIG_HOME": str(tmp_path / "hcfg"),
        "HELM_DATA_HOME": str(tmp_path / "hd"),
    }
    kubectl = str(Path(kube_cluster.bin_dir) / "kubectl")
    assert shutil.which(kubectl)

    # Server-side dry run of the rendered manifests: the API server accepts every object.
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(
        run_cmd([helm_bin, "template", release, str(CHART), "-n", rel_ns, "-f", str(vf)]).stdout
    )
    dry = kube_cluster.kubectl("apply", "--dry-run=server", "-f", str(manifest), "-o", "name")
    assert "cronjob.batch/gd-chaos-runner-kill" in dry.stdout, dry.stdout
    assert "role.rbac.authorization.k8s.io/gd-chaos-runner" in dry.stdout

    installed = False
    try:
        run_cmd(
            [
                helm_bin,
                "install",
                release,
                str(CHART),
                "-n",
                rel_ns,
                "-f",
                str(vf),
                "--wait",
                "--timeout",
                "60s",
            ],
            env=env,
        )
        installed = True
        status = json.loads(
            run_cmd([helm_bin, "status", release, "-n", rel_ns, "-o", "json"], env=env).stdout
        )
        assert status["info"]["status"] == "deployed"

        # A game day now: a Job from the CronJob gets a pod on a fake kwok node.
        kube_cluster.kubectl(
            "-n", rel_ns, "create", "job", "--from=cronjob/gd-chaos-runner-kill", "gd-now"
        )

        def running_pod() -> dict[str, Any] | None:
            pods = json.loads(
                kube_cluster.kubectl(
                    "-n", rel_ns, "get", "pods", "-l", "job-name=gd-now", "-o", "json"
                ).stdout
            )["items"]
            for p in pods:
                # kwok fakes the containers: Running, then Succeeded (restartPolicy Never).
                if p["status"].get("phase") in ("Running", "Succeeded") and p["spec"].get(
                    "nodeName"
                ):
                    return p
            return None

        try:
            pod = _wait("the game-day pod to be scheduled and run on a kwok node", running_pod)
        except AssertionError as exc:
            state = kube_cluster.kubectl(
                "-n", rel_ns, "get", "jobs,pods,events", "-o", "wide", check=False
            )
            raise AssertionError(f"{exc}\n{state.stdout}{state.stderr}") from None
        node = json.loads(
            kube_cluster.kubectl("get", "node", pod["spec"]["nodeName"], "-o", "json").stdout
        )
        for k, val in kube_cluster.node_selector.items():
            assert node["metadata"]["labels"].get(k) == val
        assert pod["spec"]["serviceAccountName"] == "gd-chaos-runner"
        # The state volume is the release's claim (bound: `helm install --wait` waits for it).
        state = next(v for v in pod["spec"]["volumes"] if v["name"] == "state")
        assert state["persistentVolumeClaim"] == {"claimName": "gd-chaos-runner-state"}
        assert pod["spec"]["securityContext"]["runAsUser"] == 65532

        # The ServiceAccount may do exactly what the experiments need, and no more.
        kubeconfig = kube_cluster.token_kubeconfig(rel_ns, "gd-chaos-runner", tmp_path / "sa.kc")
        needed = triples_to_checks(
            expected_rules({"podKill"}, owners=True), shop
        ) + triples_to_checks(
            expected_rules({"podKill", "networkLatency", "podKillEviction"}, owners=True), cart
        )
        refused = [
            AccessCheck("delete", "deployments", shop, "apps"),
            AccessCheck("patch", "deployments", cart, "apps", "scale"),
            AccessCheck("create", "pods", shop, subresource="eviction"),  # only in cart
            AccessCheck("patch", "pods", shop, subresource="ephemeralcontainers"),
            AccessCheck("get", "pods", shop),  # podKill only there
            AccessCheck("list", "pods", other),
            AccessCheck("delete", "pods", other),
            AccessCheck("list", "pods", rel_ns),
            AccessCheck("get", "secrets", cart),
            AccessCheck("list", "namespaces", None),
            AccessCheck("create", "pods", cart),
        ]

        async def review() -> tuple[list[AccessCheck], list[AccessCheck]]:
            async with await KubeClient.connect(str(kubeconfig)) as kc:
                deadline = time.monotonic() + 30
                while True:  # RoleBindings reach the authorizer's cache asynchronously
                    denied = await kc.access_review(needed)
                    if not denied or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                await kc.access_review(refused)
                return denied, refused

        denied, refused_checks = asyncio.run(asyncio.wait_for(review(), 60))
        assert [c.describe() for c in denied] == []
        assert all(c.allowed is True for c in needed)
        allowed_extra = [c.describe() for c in refused_checks if c.allowed is not False]
        assert allowed_extra == []

        # A real request outside the grant is refused with 403.
        async def forbidden_list() -> None:
            async with await KubeClient.connect(str(kubeconfig)) as kc:
                await kc.list_pods(other)

        with pytest.raises(Forbidden):
            asyncio.run(asyncio.wait_for(forbidden_list(), 30))

        # The runner itself, with the chart's token and the experiment exactly as the chart
        # configured it (from its ConfigMap), runs to the end: preflight, lease, eviction,
        # events, probes.
        kube_cluster.kubectl("-n", cart, "apply", "-f",
                             str(REPO_ROOT / "experiments" / "kubernetes" / "demo-app.yaml"))
        kube_cluster.kubectl("-n", cart, "rollout", "status", "deployment/checkout",
                             "--timeout=90s", timeout=120)
        maps = json.loads(kube_cluster.kubectl(
            "get", "configmaps", "-n", rel_ns, "-l", f"app.kubernetes.io/instance={release}",
            "-o", "json").stdout)["items"]
        text = next(v for m in maps for k, v in (m.get("data") or {}).items()
                    if k.startswith("lat"))
        exp = tmp_path / "lat.yaml"
        exp.write_text(text.replace("recovery: 20s", "recovery: 4s"))
        result = subprocess.run(
            [sys.executable, "-m", "chaos", "run", str(exp), "--kubeconfig", str(kubeconfig),
             "--state-dir", str(tmp_path / "state"), "--journal", str(tmp_path / "run.json")],
            capture_output=True, text=True, timeout=180, env={**os.environ,
                                                             "CHAOS_NAMESPACE": cart})
        assert result.returncode == 0, result.stdout + result.stderr
        journal = json.loads((tmp_path / "run.json").read_text())
        assert journal["status"] == "passed"
        assert journal["faults"][0]["injected_at"], "a pod was really evicted"
    finally:
        if installed:
            run_cmd(
                [helm_bin, "uninstall", release, "-n", rel_ns, "--wait", "--timeout", "60s"],
                env=env,
            )

    # Nothing left behind: no object with the release label, anywhere, and the Job is collected.
    selector = f"app.kubernetes.io/instance={release}"

    def leftovers() -> list[str]:
        out = kube_cluster.kubectl(
            "get",
            "cronjobs,jobs,roles,rolebindings,serviceaccounts,configmaps,persistentvolumeclaims",
            "-A",
            "-l",
            selector,
            "-o",
            "name",
        ).stdout.split()
        jobs = kube_cluster.kubectl("-n", rel_ns, "get", "jobs", "-o", "name").stdout.split()
        return out + jobs

    _wait("helm uninstall to leave nothing behind", lambda: leftovers() == [] or None)
    crb = kube_cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
    )
    assert crb.stdout.split() == []
