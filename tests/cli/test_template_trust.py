"""Where `use:` probe templates are looked up, and which are refused, through the real CLI.

Order: the --probes-dir folders, then probes/ from the experiment's folder upwards to the project
root (the nearest folder upwards holding .git; without one, the experiment's folder only). A
template, or a folder on its path, that another user than the runner (or root) owns or that the
group or others may write is refused: whoever can change a template chooses what a `command`
probe runs. Real files, real ownership (the tests run as root and chown to another uid).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
OTHER_UID = 4242  # any uid that is not the runner's (and not root)

EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {name: t}
spec:
  probes:
    - use: probes/check.yaml
      name: web
  slos:
    - {name: avail, probe: web, successRate: ">= 99%", window: 5s}
  faults:
    - name: pause
      processPause: {target: {pid: 1}}
      at: 1s
      duration: 5s
"""

# A planted template: a command probe that would leave a mark if it ever ran.
EVIL = """\
apiVersion: chaos/v1
kind: ProbeTemplate
metadata: {name: check}
probe:
  interval: 250ms
  command: {argv: ["touch", "MARK"]}
"""

GOOD = """\
apiVersion: chaos/v1
kind: ProbeTemplate
metadata: {name: check}
probe:
  interval: 250ms
  tcp: {host: 127.0.0.1, port: 9}
"""


def chaos(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, stdin=subprocess.DEVNULL)


def plant(folder: Path, text: str) -> Path:
    (folder / "probes").mkdir(parents=True, exist_ok=True)
    path = folder / "probes" / "check.yaml"
    path.write_text(text)
    return path


def project(tmp_path: Path) -> tuple[Path, Path]:
    """shared/project (a repository: it holds .git) with experiments/exp.yaml."""
    root = tmp_path / "shared" / "project"
    (root / ".git").mkdir(parents=True)
    (root / "experiments").mkdir()
    exp = root / "experiments" / "exp.yaml"
    exp.write_text(EXPERIMENT)
    return root, exp


# ------------------------------------------------------------------------------ lookup order


def test_a_template_above_the_project_root_is_never_used(tmp_path: Path) -> None:
    # Anyone who can write to a folder above the repository (/tmp, a shared CI workspace) must
    # not be able to supply a probe: before, this template was found and its command ran.
    root, exp = project(tmp_path)
    mark = tmp_path / "shared" / "MARK"
    plant(tmp_path / "shared", EVIL.replace('"MARK"', f'"{mark}"'))
    for command in ("validate", "run"):
        result = chaos(command, str(exp))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "probe template 'probes/check.yaml' not found" in result.stderr
        assert f"up to the project root {root}" in result.stderr
        assert "Traceback" not in result.stderr
    assert not mark.exists()


def test_without_a_project_root_only_the_experiments_folder_is_searched(tmp_path: Path) -> None:
    here = tmp_path / "loose" / "experiments"
    here.mkdir(parents=True)
    exp = here / "exp.yaml"
    exp.write_text(EXPERIMENT)
    plant(tmp_path / "loose", GOOD)  # in a parent: not looked at without .git
    plant(tmp_path, GOOD)
    result = chaos("validate", str(exp))
    assert result.returncode == 2, result.stdout
    assert f"in the experiment's folder {here} (no .git above it" in result.stderr
    plant(here, GOOD)  # next to the experiment: found
    result = chaos("validate", str(exp))
    assert result.returncode == 0, result.stderr


def test_templates_in_the_project_are_found_from_any_depth(tmp_path: Path) -> None:
    root, exp = project(tmp_path)
    plant(root, GOOD)
    deeper = root / "experiments" / "team" / "exp.yaml"
    deeper.parent.mkdir()
    deeper.write_text(EXPERIMENT)
    for path in (exp, deeper):
        result = chaos("validate", str(path))
        assert result.returncode == 0, result.stderr


def test_probes_dir_comes_before_the_project(tmp_path: Path) -> None:
    root, exp = project(tmp_path)
    plant(root, "kind: [unclosed\n")  # would be an error if it were picked
    extra = tmp_path / "extra"
    plant(extra, GOOD)
    result = chaos("validate", str(exp), "--probes-dir", str(extra))
    assert result.returncode == 0, result.stderr
    # also by file name alone: --probes-dir DIR holding check.yaml directly
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "check.yaml").write_text(GOOD)
    result = chaos("validate", str(exp), "--probes-dir", str(flat))
    assert result.returncode == 0, result.stderr


def test_chaos_probes_dir_is_the_probes_dir_of_an_image(tmp_path: Path) -> None:
    """The runner image has no .git: an experiment mounted from a ConfigMap finds the shipped
    templates through CHAOS_PROBES_DIR (a colon-separated list, like PATH)."""
    mounted = tmp_path / "experiments"
    mounted.mkdir()
    exp = mounted / "exp.yaml"
    exp.write_text(EXPERIMENT)
    result = chaos("validate", str(exp))
    assert result.returncode == 2, result.stdout
    assert "pass --probes-dir DIR (or set CHAOS_PROBES_DIR) to the folder that holds it" \
        in result.stderr, result.stderr
    shipped = tmp_path / "opt" / "probes"
    shipped.mkdir(parents=True)
    (shipped / "check.yaml").write_text(GOOD)
    env = {**os.environ, "CHAOS_PROBES_DIR": f"{tmp_path / 'missing'}:{shipped}"}
    result = subprocess.run([sys.executable, "-m", "chaos", "validate", str(exp)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------ refusals


@root_only
def test_a_template_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    root, exp = project(tmp_path)
    template = plant(root, GOOD)
    os.chown(template, OTHER_UID, OTHER_UID)
    result = chaos("validate", str(exp))
    assert result.returncode == 2, result.stdout
    assert f"{exp}:6:12: probe template {template} refused: {template} is owned by uid " \
           f"{OTHER_UID}, not by you (uid 0" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@root_only
def test_a_folder_on_the_path_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    root, exp = project(tmp_path)
    plant(root, GOOD)
    os.chown(root / "probes", OTHER_UID, OTHER_UID)
    result = chaos("validate", str(exp))
    assert result.returncode == 2
    assert f"{root / 'probes'} is owned by uid {OTHER_UID}" in result.stderr, result.stderr
    os.chown(root / "probes", 0, 0)
    os.chown(root, OTHER_UID, 0)  # the project folder itself
    result = chaos("validate", str(exp))
    assert result.returncode == 2
    assert f"{root} is owned by uid {OTHER_UID}" in result.stderr, result.stderr


def test_a_template_writable_by_others_is_refused(tmp_path: Path) -> None:
    root, exp = project(tmp_path)
    template = plant(root, GOOD)
    template.chmod(0o666)
    result = chaos("validate", str(exp))
    assert result.returncode == 2, result.stdout
    assert f"{template} is writable by group and others (mode -rw-rw-rw-, 0666)" \
        in result.stderr, result.stderr
    template.chmod(0o620)
    os.chown(template, -1, OTHER_UID)  # a group with no name: who is in it is not known
    result = chaos("validate", str(exp))
    assert result.returncode == 2
    assert f"{template} is writable by its group (mode -rw--w----, 0620)" in result.stderr
    os.chown(template, -1, grp.getgrnam("users").gr_gid)  # a group others are in
    result = chaos("validate", str(exp))
    assert result.returncode == 2
    assert f"{template} is writable by its group (mode -rw--w----, 0620)" in result.stderr
    template.chmod(0o644)
    assert chaos("validate", str(exp)).returncode == 0


def test_a_template_writable_by_its_owners_private_group_is_used(tmp_path: Path) -> None:
    """A umask of 002 (Debian, Ubuntu) makes a checkout group-writable; when the group is the
    owner's own (named after them, no one else in it), no one else can write it."""
    root, exp = project(tmp_path)
    template = plant(root, GOOD)
    me = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(me.pw_gid)
    assert group.gr_name == me.pw_name and not set(group.gr_mem) - {me.pw_name}
    for entry in (template, template.parent, root):
        os.chown(entry, -1, me.pw_gid)
        entry.chmod(entry.stat().st_mode | 0o020)
    assert chaos("validate", str(exp)).returncode == 0


def test_a_folder_writable_by_others_is_refused(tmp_path: Path) -> None:
    root, exp = project(tmp_path)
    plant(root, GOOD)
    (root / "probes").chmod(0o777)
    result = chaos("validate", str(exp))
    assert result.returncode == 2, result.stdout
    assert f"{root / 'probes'} is writable by group and others (mode drwxrwxrwx, 0777)" \
        in result.stderr, result.stderr
    (root / "probes").chmod(0o755)
    (tmp_path / "shared").chmod(0o777)  # higher up, above the project root: still on its path
    result = chaos("validate", str(exp))
    assert result.returncode == 2
    assert f"{tmp_path / 'shared'} is writable by group and others" in result.stderr
    # a sticky folder (like /tmp) is fine: others cannot replace what is ours in it
    (tmp_path / "shared").chmod(0o1777)
    result = chaos("validate", str(exp))
    assert result.returncode == 0, result.stderr


@root_only
def test_a_symlinked_template_is_judged_by_the_link_and_its_target(tmp_path: Path) -> None:
    root, exp = project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    real = plant(elsewhere, GOOD)
    (root / "probes").mkdir()
    link = root / "probes" / "check.yaml"
    link.symlink_to(real)
    assert chaos("validate", str(exp)).returncode == 0
    os.lchown(link, OTHER_UID, OTHER_UID)  # a link someone else made
    result = chaos("validate", str(exp))
    assert result.returncode == 2
    assert f"{link} is owned by uid {OTHER_UID}" in result.stderr, result.stderr
    os.lchown(link, 0, 0)
    (elsewhere / "probes").chmod(0o777)  # the folder the link points into
    result = chaos("validate", str(exp))
    assert result.returncode == 2
    assert f"{elsewhere / 'probes'} is writable by group and others" in result.stderr


def test_the_repository_probes_still_validate() -> None:
    repo = Path(__file__).resolve().parents[2]
    for path in sorted((repo / "experiments").glob("*.yaml")):
        result = chaos("validate", str(path), cwd=repo)
        assert result.returncode == 0, (path, result.stderr)
