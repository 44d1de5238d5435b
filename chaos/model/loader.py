"""Loading experiments from YAML, with every problem located as ``file:line:column``.

The YAML is composed into nodes (not loaded straight to dicts) so each value keeps its position;
``${VAR}`` is expanded from the environment while converting (``${VAR:-default}`` gives an explicit
default, ``$${`` is a literal ``${``); ``use:`` probe entries are expanded from probe templates;
then pydantic validates and its errors are mapped back to the positions. All problems found are
reported together, because fixing a file one error per run is miserable at 3 AM.

Files are untrusted input (docs/security.md): only regular files of at most ``MAX_FILE_BYTES``
are read (opened without blocking, so a FIFO or a device is refused, never waited on or read
forever), nesting is capped at ``MAX_DEPTH``, the values written in a file at ``MAX_FILE_VALUES``
and those visited while expanding aliases at ``MAX_NODES`` (an alias bomb stops there), tags
other than the plain scalar ones are refused, and a value that cannot be constructed is a
located problem, never a traceback.
Values that came from ``${VAR}`` are named as ``${VAR}`` in messages, never shown.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from chaos import trust
from chaos.errors import ExperimentInvalid, InvalidInput, Problem
from chaos.model.common import NAME_HINT, Loc
from chaos.model.experiment import Experiment, check_references

Pos = tuple[str, int, int]  # file, line (1-based), column (1-based)

#: The largest experiment or probe template file read; a real one is a few KiB.
MAX_FILE_BYTES = 1024 * 1024
#: The deepest nesting of mappings and lists; a real experiment nests fewer than 10 levels.
MAX_DEPTH = 64
#: The most YAML values written in one file: a real experiment has a few hundred (a file of 1 MiB
#: can hold 500,000; composing 50,000 takes about a quarter of a second).
MAX_FILE_VALUES = 50_000
#: The most values visited while converting a file, an alias (*name) counted each time it is
#: used: a "billion laughs" of a few hundred bytes stops here.
MAX_NODES = 100_000

_MIB = f"{MAX_FILE_BYTES // (1024 * 1024)} MiB"

_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PARAM = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass
class Located:
    """Plain data plus the position of every value and every mapping key, keyed by path."""

    data: Any
    values: dict[Loc, Pos] = field(default_factory=dict)
    keys: dict[Loc, Pos] = field(default_factory=dict)
    #: Strings that ``${VAR}`` expansion changed: their text as written, the expanded value and
    #: the variables it used, by position (messages name the variables, never the value).
    expanded: dict[Pos, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)
    #: Every variable read from the environment, with its value (to keep it out of messages).
    env_used: dict[str, str] = field(default_factory=dict)


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
    text: str, env: Mapping[str, str], pos: Pos, problems: _Collector, used: dict[str, str]
) -> str:
    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in env:
            used[name] = env[name]
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
_YAML = "tag:yaml.org,2002:"
_MAP_TAG, _SEQ_TAG, _STR_TAG = _YAML + "map", _YAML + "seq", _YAML + "str"
_MERGE_TAG = _YAML + "merge"
#: The scalar tags a value may have (the ones plain YAML resolves to); any other tag is refused.
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp")}


class _TooBig(Exception):
    """A cap on nesting or on the number of values was hit: one problem, and reading stops."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _CappedComposer(Composer):
    """PyYAML's composer, with a cap on the nesting depth and on the number of nodes."""

    _depth = 0
    _nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooBig(_next_mark(self), f"nested more than {MAX_DEPTH} levels deep; an "
                              "experiment needs far fewer: flatten it")
            if self._nodes > MAX_FILE_VALUES:
                raise _TooBig(_next_mark(self), f"more than {MAX_FILE_VALUES} values; an "
                              "experiment has a few hundred: is this the right file?")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _next_mark(composer: Composer) -> Any:
    event = typing.cast(Any, composer).peek_event()
    return getattr(event, "start_mark", None)


class _PyComposer(Reader, Scanner, Parser, _CappedComposer, Resolver):
    """The pure-Python reader and parser (PyYAML built without libyaml)."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _CappedComposer.__init__(self)
        Resolver.__init__(self)


def _composer(text: str) -> Any:
    """A capped composer over libyaml's parser when PyYAML has it (events about six times faster:
    a file at the caps is refused in a fraction of a second), else over the Python parser."""
    try:
        from yaml._yaml import CParser
    except ImportError:  # PyYAML built without libyaml
        return _PyComposer(text)

    class _CComposer(_CappedComposer, CParser, Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _CappedComposer.__init__(self)
            Resolver.__init__(self)

    return _CComposer(text)


def _compose_all(text: str) -> list[yaml.Node]:
    loader = _composer(text)
    try:
        documents: list[yaml.Node] = []
        while loader.check_node():
            documents.append(loader.get_node())
        return documents
    finally:
        loader.dispose()


def _tag_text(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag


def _shown(text: str, limit: int = 40) -> str:
    text = text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
    return repr(text)


class _Converter:
    """Located plain data from composed nodes, counting every node visited (aliases included)."""

    def __init__(
        self, file: str, out: Located, env: Mapping[str, str] | None, problems: _Collector
    ) -> None:
        self.file = file
        self.out = out
        self.env = env
        self.problems = problems
        self.visits = 0

    def convert(self, node: yaml.Node, loc: Loc, depth: int = 1) -> Any:
        self.visits += 1
        if self.visits > MAX_NODES:
            raise _TooBig(node.start_mark, f"the YAML expands to more than {MAX_NODES} values: "
                          "its aliases (*name) repeat what they name, over and over (an alias "
                          "bomb?); write the values out instead")
        if depth > MAX_DEPTH:
            raise _TooBig(node.start_mark, f"nested more than {MAX_DEPTH} levels deep (an alias "
                          "inside the value it names?)")
        file, out = self.file, self.out
        pos = out.values[loc] = _pos(file, node)
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                self.problems.add(pos, f"YAML tag '{_tag_text(node.tag)}' on a "
                                  "mapping is not supported: remove the tag")
                return None
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.add(_pos(file, key_node), "mapping keys must be plain strings")
                    continue
                if key_node.tag == _MERGE_TAG:
                    self.problems.add(_pos(file, key_node), "YAML merge keys (<<) are not "
                                      "supported: write the keys out")
                    continue
                ok, key_value = self.scalar(key_node)
                if not ok:
                    continue
                key = str(key_value)
                if key in result:
                    self.problems.add(
                        _pos(file, key_node),
                        f"duplicate key '{key}' (first at line {out.keys[(*loc, key)][1]})",
                    )
                    continue
                out.keys[(*loc, key)] = _pos(file, key_node)
                result[key] = self.convert(value_node, (*loc, key), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self.problems.add(pos, f"YAML tag '{_tag_text(node.tag)}' on a "
                                  "list is not supported: remove the tag")
                return None
            return [self.convert(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        value = self.scalar(node)[1]
        if isinstance(value, str) and self.env is not None and "$" in value:
            used: dict[str, str] = {}
            expanded = _interpolate(value, self.env, pos, self.problems, used)
            if used:
                out.env_used.update(used)
                out.expanded[pos] = (value, expanded, tuple(used))
            value = expanded
        return value

    def scalar(self, node: yaml.ScalarNode) -> tuple[bool, Any]:
        """(True, the value) or (False, None) with a located problem: a refused tag, or a value
        its tag cannot read (``!!bool maybe``, an integer of 5000 digits)."""
        if node.tag == _STR_TAG:
            return True, node.value
        where = _pos(self.file, node)
        if node.tag == _MERGE_TAG:
            self.problems.add(where, "YAML merge keys (<<) are not supported: write the keys out")
            return False, None
        if node.tag not in _SCALAR_TAGS:
            self.problems.add(where, f"YAML tag '{_tag_text(node.tag)}' is not supported: write "
                              "a plain value without a tag")
            return False, None
        construct = SafeConstructor.yaml_constructors[node.tag]
        text = str(node.value)
        try:
            return True, construct(_CONSTRUCTOR, node)
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError,
                yaml.YAMLError) as exc:
            kind = node.tag.removeprefix(_YAML)
            digits = sum(c.isdigit() for c in text)
            limit = sys.get_int_max_str_digits()
            if kind == "int" and limit and digits > limit:
                why = f"an integer of {digits} digits is too long (at most {limit})"
            else:
                why = f"{_shown(text)} is not a valid !!{kind} value"
                if isinstance(exc, ValueError) and str(exc) and kind == "timestamp":
                    why += f" ({exc})"
            self.problems.add(where, why)
            return False, None


def parse_yaml(
    text: str, file: str, env: Mapping[str, str] | None, problems: _Collector
) -> Located:
    """Compose YAML text into located plain data; syntax errors and caps become problems."""
    out = Located(data=None)
    if len(text) > MAX_FILE_BYTES:
        problems.add(None, f"{len(text)} characters; a file is at most {_MIB} ({MAX_FILE_BYTES} "
                     "bytes)", file)
        return out
    try:
        documents = _compose_all(text)
    except _TooBig as exc:
        _add_at_mark(problems, file, exc.mark, exc.message)
        return out
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        what = exc.problem or "invalid YAML"
        message = f"YAML syntax error: {what}; check indentation and quoting"
        if "nesting depth" in what:  # libyaml's own cap (1000), met while it scans ahead
            message = f"nested more than {MAX_DEPTH} levels deep; an experiment needs far fewer"
        problems.problems.append(Problem(file, line, col, message))
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
    try:
        out.data = _Converter(file, out, env, problems).convert(root, ())
    except _TooBig as exc:
        _add_at_mark(problems, file, exc.mark, exc.message)
        out.data = None
    return out


def _add_at_mark(problems: _Collector, file: str, mark: Any, message: str) -> None:
    if mark is None:
        problems.add(None, message, file)
    else:
        problems.add((file, mark.line + 1, mark.column + 1), message)


# ------------------------------------------------------------------------------------ reading files


def _read_regular(path: Path, what: str) -> tuple[str, os.stat_result]:
    """The UTF-8 text of the regular file at ``path`` (at most ``MAX_FILE_BYTES``) and its
    stat (chaos.trust). Raises ``OSError``, ``UnicodeDecodeError`` or ``trust.Refused``."""
    data, st = trust.read_regular(path, limit=MAX_FILE_BYTES, what=what,
                                  limit_says=f"{what}s are at most")
    return data.decode("utf-8"), st


# -------------------------------------------------------------------------------- probe templates


def project_root(start: Path) -> Path | None:
    """The nearest folder from ``start`` upwards that holds ``.git``, or None."""
    for folder in (start, *start.parents):
        if os.path.lexists(folder / ".git"):
            return folder
    return None


def upward_folders(base_dir: Path) -> list[Path]:
    """The experiment's folder and its parents up to the project root (the nearest folder
    upwards that holds ``.git``); without a project root, the experiment's folder only. Never
    above the project: /tmp or a shared CI workspace must not be able to supply probes."""
    root = project_root(base_dir)
    if root is None:
        return [base_dir]
    return [base_dir, *(folder for folder in base_dir.parents if folder.is_relative_to(root))]


def _find_template(ref: str, base_dir: Path, search: list[Path]) -> Path | None:
    """The first that exists of: ``ref`` in each ``--probes-dir`` folder (then its file name
    there), then ``ref`` in each of :func:`upward_folders`. An absolute ``ref`` is only itself."""
    ref_path = Path(ref)
    if ref_path.is_absolute():
        candidates = [ref_path]
    else:
        candidates = [d / ref_path for d in search] + [d / ref_path.name for d in search]
        candidates += [d / ref_path for d in upward_folders(base_dir)]
    return next((c for c in candidates if os.path.exists(c)), None)


class _Substituter:
    """``{{param}}`` replaced in a template's probe, within the caps: a template can name a
    parameter many times, and each use copies it (a large ``with:`` value used 10,000 times)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.used: set[str] = set()
        self.values = 0
        self.chars = 0

    def _count(self, value: Any) -> None:
        stack = [value]
        while stack:
            item = stack.pop()
            self.values += 1
            if isinstance(item, str):
                self.chars += len(item)
            elif isinstance(item, dict):
                stack += item.values()
            elif isinstance(item, list):
                stack += item
            if self.values > MAX_NODES or self.chars > MAX_FILE_BYTES:
                self._over()

    def _over(self) -> typing.NoReturn:
        raise _TooBig(None, f"expanding the template gives more than {MAX_NODES} values or "
                      f"{_MIB} of text; pass smaller parameters, or use them less often")

    def substitute(self, value: Any) -> Any:
        if isinstance(value, dict):
            self._count(None)
            return {k: self.substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            self._count(None)
            return [self.substitute(v) for v in value]
        if isinstance(value, str):
            whole = _PARAM.fullmatch(value.strip())
            if whole and whole.group(1) in self.params:
                self.used.add(whole.group(1))
                param = self.params[whole.group(1)]
                self._count(param)
                return param  # keep the parameter's own type (int, list, ...)

            grown = 0

            def repl(match: re.Match[str]) -> str:
                nonlocal grown
                if match.group(1) not in self.params:
                    return match.group(0)
                self.used.add(match.group(1))
                piece = str(self.params[match.group(1)])
                grown += len(piece)
                if self.chars + grown > MAX_FILE_BYTES:  # stop before building a huge string
                    self._over()
                return piece

            text = _PARAM.sub(repl, value)
            self._count(text)
            return text
        self._count(value)
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
    use_pos = exp.values.get((*loc, "use"), here)
    path = _find_template(ref, base_dir, search)
    if path is None:
        root = project_root(base_dir)
        where = (f"the experiment's folder and its parents up to the project root {root}" if root
                 else f"the experiment's folder {base_dir} (no .git above it, so not its parents)")
        dirs = ", ".join(str(d) for d in search)
        first = f"--probes-dir {dirs}, then in " if search else ""
        problems.add(
            use_pos, f"probe template '{ref}' not found (looked in {first}{where}): pass "
            "--probes-dir DIR (or set CHAOS_PROBES_DIR) to the folder that holds it"
        )
        return None
    try:
        text, st = _read_regular(path, "probe template")
    except trust.Refused as exc:
        problems.add(use_pos, f"probe template {path} {exc}")
        return None
    except UnicodeDecodeError as exc:
        problems.add(use_pos, f"probe template {path} is not UTF-8 text ({exc.reason} at byte "
                     f"{exc.start})")
        return None
    except OSError as exc:
        problems.add(use_pos, f"probe template {path}: cannot read: {exc.strerror or exc}")
        return None
    unsafe = trust.untrusted_path(path, st)
    if unsafe:
        problems.add(
            use_pos,
            f"probe template {path} refused: {unsafe}; whoever can change it chooses what this "
            "run executes (fix: chown it and its folders to you or root, chmod go-w)",
        )
        return None
    tproblems = _Collector()
    template = parse_yaml(text, str(path), env, tproblems)
    problems.problems += tproblems.problems
    exp.expanded.update(template.expanded)
    exp.env_used.update(template.env_used)
    tdata = template.data
    if tproblems.problems or not isinstance(tdata, dict):
        return None
    if tdata.get("kind") != "ProbeTemplate" or not isinstance(tdata.get("probe"), dict):
        problems.add(
            (str(path), 1, 1), "a probe template needs 'kind: ProbeTemplate' and a 'probe:' block"
        )
        return None
    declared = tdata.get("params") or {}
    if not isinstance(declared, dict) or not all(
        isinstance(d, dict) or d is None for d in declared.values()
    ):
        problems.add(template.values.get(("params",), (str(path), 1, 1)),
                     "a probe template's 'params' maps each name to {default, description}")
        return None
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
    try:
        probe = _Substituter(params).substitute(tdata["probe"])
    except _TooBig as exc:
        problems.add(use_pos, f"probe template {path}: {exc.message}")
        return None
    metadata = tdata.get("metadata")
    default_name = metadata.get("name") if isinstance(metadata, dict) else None
    probe["name"] = entry.get("name", probe.get("name") or default_name)
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
        raise _invalid(problems.problems, located)
    base_dir = Path(file).resolve().parent if not file.startswith("<") else Path.cwd()
    search = list(probes_dirs or [])

    spec = located.data.get("spec") if isinstance(located.data, dict) else None
    probes = spec.get("probes") if isinstance(spec, dict) else None
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
        raise _invalid(problems.problems, located)

    try:
        experiment = Experiment.model_validate(located.data)
    except ValidationError as exc:
        raise _invalid(_pydantic_problems(exc, located, file), located) from None

    for ref_loc, message in check_references(experiment):
        pos = _nearest(_alias_loc(ref_loc), located.values)
        problems.add(pos, f"{_path_text(ref_loc)}: {message}", file)
    if problems.problems:
        raise _invalid(problems.problems, located)
    return experiment


def _invalid(problems: list[Problem], located: Located) -> ExperimentInvalid:
    return ExperimentInvalid([_redact(p, located) for p in problems])


def _redact(problem: Problem, located: Located) -> Problem:
    """The problem with every value that came from the environment named as ``${VAR}``: a
    message must not print a secret (a token in a URL, a password). At the position of an
    expanded string, the string is shown as written; elsewhere (a value carried into a template,
    a cross-reference) each variable's value of 4 or more characters is replaced by its name
    (shorter ones would replace ordinary words; the same rule as chaos/redact.py)."""
    forms: dict[str, str] = {}

    def add(value: str, shown: str) -> None:
        for form in (value, repr(value)[1:-1]):  # as is, and as a repr() in a message shows it
            if form:
                forms.setdefault(form, shown)

    here = located.expanded.get((problem.file, problem.line or 0, problem.column or 0))
    if here is not None:
        raw, value, names = here
        add(value, raw)
        for name in names:
            add(located.env_used[name], f"${{{name}}}")
    for name, value in located.env_used.items():
        if len(value) >= 4:
            add(value, f"${{{name}}}")
    if not forms:
        return problem
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
    message = pattern.sub(lambda m: forms[m.group(0)], problem.message)
    if message == problem.message:
        return problem
    return Problem(problem.file, problem.line, problem.column, message)


def _alias_loc(loc: Loc) -> Loc:
    return tuple(to_camel(p) if isinstance(p, str) else p for p in loc)


def load_experiment(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    probes_dirs: list[Path] | None = None,
) -> Experiment:
    """Load an experiment file. Missing or unreadable files are :class:`InvalidInput`; so is
    anything but a regular file of at most ``MAX_FILE_BYTES`` (a FIFO, a device, a symlink to
    one)."""
    p = Path(path)
    try:
        text = _read_regular(p, "experiment file")[0]
    except trust.Refused as exc:
        raise InvalidInput(f"{p}: {exc}") from None
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
