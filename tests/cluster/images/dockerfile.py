"""A small Dockerfile reader (stdlib only, Python >= 3.11): enough of the syntax that the image
builder (build.py) and the tests (tests/images) take the package lists, ENV, USER, WORKDIR,
ENTRYPOINT, CMD, EXPOSE and COPY instructions from docker/*.Dockerfile itself, so that the
images built without Docker cannot drift from what ``docker build`` would make.

Supported: comments, line continuations (comment lines inside a continuation are dropped, as
Docker does), multi-stage builds (``FROM x AS name``), the JSON (exec) and shell forms of
ENTRYPOINT/CMD/RUN, both ENV forms, ``COPY [--from=stage] [--chown=..] src... dst``, ARG
defaults and ``$VAR``/``${VAR}`` substitution in FROM/COPY/ADD/ENV/USER/WORKDIR. Not supported
(raises DockerfileError): heredocs, ONBUILD, and anything the builder would silently get wrong.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Copy",
    "Dockerfile",
    "DockerfileError",
    "ImageConfig",
    "Instruction",
    "Stage",
    "apt_packages",
    "parse",
    "parse_text",
]

#: What Docker puts in Env when neither the base image nor the Dockerfile sets PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class DockerfileError(ValueError):
    pass


@dataclass(frozen=True)
class Instruction:
    cmd: str  # upper case: FROM, RUN, COPY, ...
    value: str  # the rest of the logical line, continuations joined
    line: int  # 1-based line of the instruction's first physical line


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: str
    from_stage: str | None = None
    chown: str | None = None
    line: int = 0


@dataclass
class ImageConfig:
    """What the final stage sets in the image config (None: not set by this Dockerfile)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None  # [] when an ENTRYPOINT reset the base image's CMD
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    workdir: str | None = None
    exposed_ports: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Stage:
    base: str  # the FROM image, ARGs substituted
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)
    index: int = 0

    def runs(self) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == "RUN"]

    def copies(self) -> list[Copy]:
        return [_parse_copy(i) for i in self.instructions if i.cmd in ("COPY", "ADD")]

    def config(self, args: dict[str, str] | None = None) -> ImageConfig:
        cfg = ImageConfig()
        env: dict[str, str] = dict(args or {})  # ARGs are visible to substitution, not to Env
        cmd_set = False
        for ins in self.instructions:
            match ins.cmd:
                case "ENV":
                    for k, v in _parse_env(ins.value, env).items():
                        cfg.env[k] = v
                        env[k] = v
                case "ARG":
                    k, _, v = ins.value.strip().partition("=")
                    if k.strip() not in env:
                        env[k.strip()] = _unquote(v.strip())
                case "USER":
                    cfg.user = _subst(ins.value.strip(), env)
                case "WORKDIR":
                    w = _subst(ins.value.strip(), env)
                    cfg.workdir = w if w.startswith("/") else f"{(cfg.workdir or '/').rstrip('/')}/{w}"
                case "ENTRYPOINT":
                    cfg.entrypoint = _exec_form(ins)
                    if not cmd_set:
                        cfg.cmd = []  # Docker: ENTRYPOINT resets the CMD inherited from the base
                case "CMD":
                    cfg.cmd = _exec_form(ins)
                    cmd_set = True
                case "EXPOSE":
                    for p in _subst(ins.value, env).split():
                        cfg.exposed_ports.append(p if "/" in p else f"{p}/tcp")
                case "LABEL":
                    for k, v in _parse_env(ins.value, env).items():
                        cfg.labels[k] = v
        return cfg


@dataclass
class Dockerfile:
    path: Path | None
    stages: list[Stage]
    args: dict[str, str]  # ARGs declared before the first FROM, with their defaults

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name_or_index: str) -> Stage:
        for s in self.stages:
            if s.name == name_or_index or str(s.index) == name_or_index:
                return s
        raise DockerfileError(f"{self.path}: no stage named {name_or_index!r}")

    def config(self) -> ImageConfig:
        return self.final.config(self.args)


def parse(path: str | Path, build_args: dict[str, str] | None = None) -> Dockerfile:
    p = Path(path)
    return parse_text(p.read_text(), p, build_args)


def parse_text(
    text: str, path: Path | None = None, build_args: dict[str, str] | None = None
) -> Dockerfile:
    where = str(path or "<Dockerfile>")
    instructions = list(_logical_lines(text, where))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.cmd in ("ONBUILD",):
            raise DockerfileError(f"{where}:{ins.line}: {ins.cmd} is not supported")
        if ins.cmd == "FROM":
            words = ins.value.split()
            words = [w for w in words if not w.startswith("--platform=")]
            if not words:
                raise DockerfileError(f"{where}:{ins.line}: FROM without an image")
            name = None
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2]
            elif len(words) != 1:
                raise DockerfileError(f"{where}:{ins.line}: cannot read FROM {ins.value!r}")
            env = {**args, **(build_args or {})}
            stages.append(Stage(base=_subst(words[0], env), name=name, index=len(stages)))
        elif not stages:
            if ins.cmd != "ARG":
                raise DockerfileError(f"{where}:{ins.line}: {ins.cmd} before the first FROM")
            k, _, v = ins.value.strip().partition("=")
            args[k.strip()] = (build_args or {}).get(k.strip(), _unquote(v.strip()))
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise DockerfileError(f"{where}: no FROM")
    return Dockerfile(path=path, stages=stages, args={**args, **(build_args or {})})


def apt_packages(stage: Stage) -> list[str]:
    """The packages of every ``apt-get install`` (or ``apt install``) in the stage's RUN lines,
    in order, version pins kept (``tini=0.19.0-1+b3``)."""
    pkgs: list[str] = []
    for ins in stage.runs():
        for cmd in _shell_commands(ins.value):
            words = _shell_words(cmd)
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words = words[1:]  # DEBIAN_FRONTEND=noninteractive apt-get ...
            if len(words) < 2 or words[0] not in ("apt-get", "apt"):
                continue
            rest = [w for w in words[1:] if not w.startswith("-")]
            if rest and rest[0] == "install":
                pkgs.extend(rest[1:])
    return pkgs


def run_is_apt_only(ins: Instruction) -> bool:
    """True when a RUN only updates/installs apt packages and cleans up after apt (what the
    builder replaces with mmdebstrap --include)."""
    for cmd in _shell_commands(ins.value):
        words = _shell_words(cmd)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]
        if not words:
            continue
        if words[0] in ("apt-get", "apt"):
            continue
        if words[:2] == ["rm", "-rf"] and all(
            w.startswith(("/var/lib/apt/lists", "/var/cache/apt")) for w in words[2:]
        ):
            continue
        return False
    return True


# ---------------------------------------------------------------------------------------------


def _logical_lines(text: str, where: str):
    buf: list[str] = []
    start = 0
    escape = "\\"
    lines = text.splitlines()
    in_directives = True
    for n, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if in_directives:
            m = re.fullmatch(r"#\s*(\w+)\s*=\s*(\S+)\s*", stripped)
            if m and m.group(1).lower() == "escape":
                escape = m.group(2)
                continue
            if m:
                continue
            in_directives = False
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continuation is dropped
        if not buf:
            start = n
        if stripped.endswith(escape):
            buf.append(stripped[: -len(escape)])
            continue
        buf.append(stripped)
        joined = " ".join(b.strip() for b in buf if b.strip())
        buf = []
        yield _instruction(joined, start, where)
    if buf:
        joined = " ".join(b.strip() for b in buf if b.strip())
        if joined:
            yield _instruction(joined, start, where)


def _instruction(joined: str, line: int, where: str) -> Instruction:
    cmd, _, value = joined.partition(" ")
    if cmd.upper() in ("RUN", "COPY") and re.search(r"<<-?['\"]?[A-Za-z_]", value):
        raise DockerfileError(f"{where}:{line}: heredocs are not supported")
    return Instruction(cmd=cmd.upper(), value=value.strip(), line=line)


def _exec_form(ins: Instruction) -> list[str]:
    v = ins.value.strip()
    if v.startswith("["):
        try:
            out = json.loads(v)
        except json.JSONDecodeError:
            out = None
        if isinstance(out, list) and all(isinstance(x, str) for x in out):
            return out
    return ["/bin/sh", "-c", v]  # shell form (and invalid JSON, as Docker treats it)


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def _subst(s: str, env: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name in env and env[name] != "":
            return env[name]
        return m.group(2) or ""

    return _VAR.sub(repl, s)


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _parse_env(value: str, env: dict[str, str]) -> dict[str, str]:
    words = shlex.split(value, posix=True)
    out: dict[str, str] = {}
    if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
        key = words[0]
        rest = value.strip()[len(key) :].strip()
        out[key] = _subst(_unquote(rest), env)
        return out
    for w in words:
        k, eq, v = w.partition("=")
        if not eq:
            raise DockerfileError(f"cannot read ENV/LABEL word {w!r}")
        out[k] = _subst(v, {**env, **out})
    return out


def _parse_copy(ins: Instruction) -> Copy:
    words = shlex.split(ins.value) if not ins.value.startswith("[") else None
    if words is None:
        words = json.loads(ins.value)
    from_stage = chown = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            from_stage = flag.split("=", 1)[1]
        elif flag.startswith("--chown="):
            chown = flag.split("=", 1)[1]
        elif flag.startswith(("--chmod=", "--link")):
            raise DockerfileError(f"line {ins.line}: COPY {flag} is not supported by the builder")
    if len(words) < 2:
        raise DockerfileError(f"line {ins.line}: COPY needs a source and a destination")
    return Copy(tuple(words[:-1]), words[-1], from_stage, chown, ins.line)


def _shell_commands(script: str) -> list[str]:
    """Split a RUN shell line at ``&&``, ``||``, ``;`` (outside quotes)."""
    parts: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(script):
        c = script[i]
        if quote:
            cur.append(c)
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            cur.append(c)
        elif script.startswith(("&&", "||"), i):
            parts.append("".join(cur))
            cur = []
            i += 2
            continue
        elif c == ";":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _shell_words(cmd: str) -> list[str]:
    try:
        return shlex.split(cmd)
    except ValueError:
        return cmd.split()
