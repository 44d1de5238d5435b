"""Loading experiments from YAML, with every problem located as ``file:line:column``.

The YAML is composed into nodes (not loaded straight to dicts) so each value keeps its position;
``${VAR}`` is expanded from the environment while converting (``${VAR:-default}`` gives an explicit
default, ``$${`` is a literal ``${``); ``use:`` probe entries are expanded from probe templates;
then pydantic validates and its errors are mapped back to the positions. All problems found are
reported together, because fixing a file one error per run is miserable at 3 AM.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from yaml.constructor import SafeConstructor

from chaos.errors import ExperimentInvalid, InvalidInput, Problem
from chaos.model.common import NAME_HINT, Loc
from chaos.model.experiment import Experiment, check_references

Pos = tuple[str, int, int]  # file, line (1-based), column (1-based)

_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PARAM = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass
class Located:
    """Plain data plus the position of every value and every mapping key, keyed by path."""

    data: Any
    values: dict[Loc, Pos] = field(default_factory=dict)
    keys: dict[Loc, Pos] = field(default_factory=dict)


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, pos: Pos | None, message: str, file: str = "?") -> None:
        if pos is None:
            self.problems.append(Problem(file, None, None, message))
        else:
            self.problems.append(Problem(pos[0], pos[1], pos[2], message))


def _pos(file: str, node: yaml.Node) -> Pos:
    return (file, node.start_mark.line + 1, node.start_mark.column + 1)


def _interpolate(
    text: str, env: Mapping[str, str], pos: Pos, problems: _Collector
) -> str:
    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.add(
            pos,
            f"environment variable {name} is not set; export it, or give a default "
            f"with ${{{name}:-value}}",
        )
        return match.group(0)

    return _ENV.sub(repl, text)


_CONSTRUCTOR = SafeConstructor()


def _convert(
    node: yaml.Node,
    loc: Loc,
    file: str,
    out: Located,
    env: Mapping[str, str] | None,
    problems: _Collector,
) -> Any:
    out.values[loc] = _pos(file, node)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.add(_pos(file, key_node), "mapping keys must be plain strings")
                continue
            key = str(_CONSTRUCTOR.construct_object(key_node))
            if key == "<<":
                problems.add(_pos(file, key_node), "YAML merge keys (<<) are not supported")
                continue
            if key in result:
                problems.add(
                    _pos(file, key_node),
                    f"duplicate key '{key}' (first at line {out.keys[(*loc, key)][1]})",
                )
                continue
            out.keys[(*loc, key)] = _pos(file, key_node)
            result[key] = _convert(value_node, (*loc, key), file, out, env, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*loc, i), file, out, env, problems) for i, item in enumerate(node.value)
        ]
    assert isinstance(node, yaml.ScalarNode)
    value = _CONSTRUCTOR.construct_object(node)
    if isinstance(value, str) and env is not None:
        value = _interpolate(value, env, _pos(file, node), problems)
    return value


def parse_yaml(
    text: str, file: str, env: Mapping[str, str] | None, problems: _Collector
) -> Located:
    """Compose YAML text into located plain data; syntax errors become problems."""
    out = Located(data=None)
    try:
        documents = list(yaml.compose_all(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        what = exc.problem or "invalid YAML"
        problems.problems.append(
            Problem(file, line, col, f"YAML syntax error: {what}; check indentation and quoting")
        )
        return out
    except yaml.YAMLError as exc:
        problems.add(None, f"YAML error: {exc}", file)
        return out
    if not documents or documents[0] is None:
        problems.problems.append(Problem(file, None, None, "the file is empty"))
        return out
    if len(documents) > 1:
        problems.add(_pos(file, documents[1]), "one experiment per file: remove the extra '---'")
    root = documents[0]
    if not isinstance(root, yaml.MappingNode):
        problems.add(_pos(file, root), "an experiment is a mapping with apiVersion, kind, ...")
        return out
    out.data = _convert(root, (), file, out, env, problems)
    return out


# -------------------------------------------------------------------------------- probe templates


def _find_template(ref: str, base_dir: Path, search: list[Path]) -> Path | None:
    candidates: list[Path] = []
    ref_path = Path(ref)
    if ref_path.is_absolute():
        candidates.append(ref_path)
    else:
        # The experiment's own folder and its parents, so `use: probes/x.yaml` works from
        # experiments/ inside a repository whose probes/ sits at the top.
        for folder in [base_dir, *base_dir.parents]:
            candidates.append(folder / ref_path)
        candidates += [d / ref_path for d in search]
        candidates += [d / ref_path.name for d in search]
    return next((c for c in candidates if c.is_file()), None)


def _substitute(value: Any, params: Mapping[str, Any], used: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, params, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params, used) for v in value]
    if isinstance(value, str):
        whole = _PARAM.fullmatch(value.strip())
        if whole and whole.group(1) in params:
            used.add(whole.group(1))
            return params[whole.group(1)]  # keep the parameter's own type (int, list, ...)

        def repl(match: re.Match[str]) -> str:
            if match.group(1) in params:
                used.add(match.group(1))
                return str(params[match.group(1)])
            return match.group(0)

        return _PARAM.sub(repl, value)
    return value


def _expand_use(
    entry: dict[str, Any],
    loc: Loc,
    exp: Located,
    base_dir: Path,
    search: list[Path],
    env: Mapping[str, str],
    problems: _Collector,
) -> tuple[Any, dict[Loc, Pos], dict[Loc, Pos]] | None:
    """Expand one ``use:`` probe entry; returns the data and positions for its subtree."""
    here = exp.values.get(loc)
    allowed = {"use", "with", "name", "interval"}
    for key in entry:
        if key not in allowed:
            problems.add(
                exp.keys.get((*loc, key)),
                f"unknown key '{key}' next to 'use': allowed are {', '.join(sorted(allowed))}",
            )
    ref = entry.get("use")
    if not isinstance(ref, str):
        problems.add(exp.values.get((*loc, "use")), "'use' takes the path of a probe template")
        return None
    path = _find_template(ref, base_dir, search)
    if path is None:
        problems.add(
            exp.values.get((*loc, "use"), here),
            f"probe template '{ref}' not found (looked next to the experiment, in its parent "
            "folders and in --probes-dir)",
        )
        return None
    tproblems = _Collector()
    template = parse_yaml(path.read_text(encoding="utf-8"), str(path), env, tproblems)
    problems.problems += tproblems.problems
    tdata = template.data
    if tproblems.problems or not isinstance(tdata, dict):
        return None
    if tdata.get("kind") != "ProbeTemplate" or not isinstance(tdata.get("probe"), dict):
        problems.add(
            (str(path), 1, 1), "a probe template needs 'kind: ProbeTemplate' and a 'probe:' block"
        )
        return None
    declared = tdata.get("params") or {}
    given = entry.get("with") or {}
    if not isinstance(given, dict):
        problems.add(exp.values.get((*loc, "with")), "'with' takes a mapping of parameters")
        return None
    params: dict[str, Any] = {}
    for pname, raw_decl in declared.items():
        pdecl = raw_decl or {}
        if pname in given:
            params[pname] = given[pname]
        elif "default" in pdecl:
            params[pname] = pdecl["default"]
        else:
            problems.add(
                exp.values.get((*loc, "with"), here),
                f"probe template '{ref}' needs parameter '{pname}'"
                + (f" ({pdecl['description']})" if pdecl.get("description") else ""),
            )
    for gname in given:
        if gname not in declared:
            close = difflib.get_close_matches(gname, list(declared), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.add(
                exp.keys.get((*loc, "with", gname)),
                f"probe template '{ref}' has no parameter '{gname}'{hint}",
            )
    used: set[str] = set()
    probe = _substitute(tdata["probe"], params, used)
    probe["name"] = entry.get("name", probe.get("name") or tdata.get("metadata", {}).get("name"))
    if "interval" in entry:
        probe["interval"] = entry["interval"]
    # Positions: values inside the probe point into the template, name/interval/with at the use.
    values: dict[Loc, Pos] = {loc: here} if here else {}
    keys: dict[Loc, Pos] = {}
    for tloc, tpos in template.values.items():
        if tloc[:1] == ("probe",):
            values[(*loc, *tloc[1:])] = tpos
    for tloc, tpos in template.keys.items():
        if tloc[:1] == ("probe",):
            keys[(*loc, *tloc[1:])] = tpos
    for key in ("name", "interval"):
        if (*loc, key) in exp.values:
            values[(*loc, key)] = exp.values[(*loc, key)]
    return probe, values, keys


# ------------------------------------------------------------------------------ error locations


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (for 'did you mean')."""
    model: Any = Experiment
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        target = None
        for fname, finfo in model.model_fields.items():
            if part in (fname, finfo.alias):
                target = finfo.annotation
        if target is None:
            return None
        model = _unwrap(target)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = typing.get_args(arg)
        for sub in inner:
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                return sub
    return annotation


def _path_text(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _nearest(loc: Loc, positions: dict[Loc, Pos]) -> Pos | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in positions:
            return positions[loc[:end]]
    return None


def _pydantic_problems(exc: ValidationError, exp: Located, file: str) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        loc: Loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        kind = err["type"]
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if kind == "extra_forbidden":
            key = loc[-1]
            model = _model_at(loc[:-1])
            allowed = (
                [finfo.alias or name for name, finfo in model.model_fields.items()]
                if model
                else []
            )
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            if not close and allowed:
                hint = f"; allowed keys: {', '.join(allowed)}"
            msg = f"unknown key '{key}'{hint}"
            pos = exp.keys.get(loc) or _nearest(loc, exp.values)
            where = _path_text(loc[:-1])
        elif kind == "missing":
            msg = f"missing required key '{loc[-1]}'"
            pos = _nearest(loc[:-1], exp.values)
            where = _path_text(loc[:-1])
        else:
            pos = _nearest(loc, exp.values)
            where = _path_text(loc)
            if kind == "literal_error":
                msg = f"{msg}, got {err.get('input')!r}"
            elif kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
                msg = f"'{err.get('input')}' is not a valid name: use {NAME_HINT}"
        text = f"{where}: {msg}" if where else msg
        if pos is None:
            problems.append(Problem(file, None, None, text))
        else:
            problems.append(Problem(pos[0], pos[1], pos[2], text))
    return problems


# ------------------------------------------------------------------------------------ public API


def load_experiment_text(
    text: str,
    file: str = "<experiment>",
    *,
    env: Mapping[str, str] | None = None,
    probes_dirs: list[Path] | None = None,
) -> Experiment:
    """Parse and validate an experiment; raise :class:`ExperimentInvalid` with every problem."""
    environ = os.environ if env is None else env
    problems = _Collector()
    located = parse_yaml(text, file, environ, problems)
    if located.data is None:
        raise ExperimentInvalid(problems.problems)
    base_dir = Path(file).resolve().parent if not file.startswith("<") else Path.cwd()
    search = list(probes_dirs or [])

    probes = located.data.get("spec", {}).get("probes") if isinstance(located.data, dict) else None
    if isinstance(probes, list):
        for i, entry in enumerate(probes):
            if isinstance(entry, dict) and "use" in entry:
                loc: Loc = ("spec", "probes", i)
                expanded = _expand_use(entry, loc, located, base_dir, search, environ, problems)
                if expanded is None:
                    probes[i] = None
                    continue
                probes[i], values, keys = expanded
                for old in [k for k in located.values if k[: len(loc)] == loc]:
                    del located.values[old]
                for old in [k for k in located.keys if k[: len(loc)] == loc]:
                    del located.keys[old]
                located.values.update(values)
                located.keys.update(keys)
    if problems.problems:
        # Expansion problems make later errors noise; report what we have.
        raise ExperimentInvalid(problems.problems)

    try:
        experiment = Experiment.model_validate(located.data)
    except ValidationError as exc:
        raise ExperimentInvalid(_pydantic_problems(exc, located, file)) from None

    for ref_loc, message in check_references(experiment):
        pos = _nearest(_alias_loc(ref_loc), located.values)
        problems.add(pos, f"{_path_text(ref_loc)}: {message}", file)
    if problems.problems:
        raise ExperimentInvalid(problems.problems)
    return experiment


def _alias_loc(loc: Loc) -> Loc:
    return tuple(to_camel(p) if isinstance(p, str) else p for p in loc)


def load_experiment(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    probes_dirs: list[Path] | None = None,
) -> Experiment:
    """Load an experiment file. Missing or unreadable files are :class:`InvalidInput`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(
            f"{p}: no such experiment file", hint="check the path; experiments/ holds examples"
        ) from None
    except IsADirectoryError:
        raise InvalidInput(f"{p}: is a directory, not an experiment file") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InvalidInput(f"{p}: cannot read: {exc.strerror}") from None
    return load_experiment_text(text, str(p), env=env, probes_dirs=probes_dirs)
