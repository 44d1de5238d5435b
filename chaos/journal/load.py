"""Reading a saved run journal (the JSON of ``RunRecord.to_json``) back into a ``RunRecord``.

This is what ``chaos report`` and other tools use to render a finished run again. Every key the
journal contract promises is required; a key a newer or older runner may leave out falls back to
the dataclass default. Anything else that is wrong is an ``InvalidInput`` naming the file and the
exact place (``faults[1].targets``) so a person can see whether they passed the wrong file.

A journal is untrusted input (``chaos report`` renders whatever file it is given): only a regular
file of at most ``MAX_JOURNAL_BYTES`` is read (opened without blocking: a FIFO or a device is
refused, never waited on or read forever), nesting deeper than ``MAX_DEPTH`` and numbers that are
not finite (``1e999``, ``NaN``) or integers longer than 19 digits are refused, anywhere.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from chaos import trust
from chaos.errors import InvalidInput
from chaos.journal.record import (
    AbortRecord,
    FaultRecord,
    RollbackRecord,
    RunRecord,
    SampleRecord,
    SloRecord,
    Status,
)

_HINT = "pass the JSON file written by `chaos run --journal PATH`"
_MISSING = object()

#: The largest journal read: an hour of four probes sampled every 100 ms is about 15 MB.
MAX_JOURNAL_BYTES = 64 * 1024 * 1024
#: The deepest nesting of lists and objects; a journal nests fewer than 10 levels.
MAX_DEPTH = 64
#: Integers with more digits than this are refused (a journal's fit in 64 bits).
_MAX_INT_DIGITS = 19


class _Reader:
    """Typed access to one JSON object, with errors that say where in the journal it went wrong."""

    def __init__(self, source: str, where: str, data: object) -> None:
        self.source = source
        self.where = where
        if not isinstance(data, dict):
            raise self.error(f"{where or 'the top level'} should be an object, "
                             f"got {_json_type(data)}")
        self.data: dict[str, Any] = data

    def error(self, what: str) -> InvalidInput:
        return InvalidInput(f"{self.source}: not a chaos run journal: {what}", hint=_HINT)

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, default: object) -> object:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            place = f"{self.where} has" if self.where else "it has"
            raise self.error(f"{place} no key '{key}'")
        return default

    def _wrong(self, key: str, expected: str, value: object) -> InvalidInput:
        return self.error(f"'{self._path(key)}' should be {expected}, got {_json_type(value)}")

    def get_str(self, key: str, default: object = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self._wrong(key, "a string", value)
        return value

    def get_opt_str(self, key: str, default: object = _MISSING) -> str | None:
        value = self._get(key, default)
        if value is not None and not isinstance(value, str):
            raise self._wrong(key, "a string or null", value)
        return value

    def get_float(self, key: str, default: object = _MISSING) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number", value)
        return float(value)

    def get_opt_float(self, key: str, default: object = _MISSING) -> float | None:
        value = self._get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number or null", value)
        return float(value)

    def get_int(self, key: str, default: object = _MISSING) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "an integer", value)
        return value

    def get_bool(self, key: str, default: object = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value

    def get_list(self, key: str, default: object = _MISSING) -> list[Any]:
        value = self._get(key, default)
        if not isinstance(value, list):
            raise self._wrong(key, "a list", value)
        return value

    def get_str_list(self, key: str, default: object = _MISSING) -> list[str]:
        items = self.get_list(key, default)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(f"'{self._path(key)}[{i}]' should be a string, "
                                 f"got {_json_type(item)}")
        return [str(item) for item in items]

    def get_obj(self, key: str, default: object = _MISSING) -> dict[str, Any]:
        value = self._get(key, default)
        if not isinstance(value, dict):
            raise self._wrong(key, "an object", value)
        return value

    def child(self, key: str, value: object) -> _Reader:
        return _Reader(self.source, self._path(key), value)

    def children(self, key: str, default: object = _MISSING) -> list[_Reader]:
        items = self.get_list(key, default)
        return [self.child(f"{key}[{i}]", item) for i, item in enumerate(items)]


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _sample(r: _Reader) -> SampleRecord:
    return SampleRecord(
        t=r.get_float("t"),
        ok=r.get_bool("ok"),
        latency=r.get_opt_float("latency"),
        detail=r.get_str("detail", ""),
        phase=r.get_str("phase", ""),
    )


def _fault(r: _Reader) -> FaultRecord:
    return FaultRecord(
        name=r.get_str("name"),
        kind=r.get_str("kind"),
        description=r.get_str("description", ""),
        targets=r.get_str_list("targets"),
        at=r.get_float("at", 0.0),
        duration=r.get_opt_float("duration", None),
        one_shot=r.get_bool("one_shot", False),
        injected_at=r.get_opt_str("injected_at"),
        reverted_at=r.get_opt_str("reverted_at"),
        inject_error=r.get_opt_str("inject_error", None),
        revert_error=r.get_opt_str("revert_error"),
        revert_state=r.get_obj("revert_state", {}),
        verified_at=r.get_opt_str("verified_at", None),
        effect=r.get_opt_str("effect", None),
        effect_seconds=r.get_opt_float("effect_seconds", None),
        not_in_effect=r.get_opt_str("not_in_effect", None),
        revert_verified=r.get_opt_str("revert_verified", None),
        journal_error=r.get_opt_str("journal_error", None),
    )


def _slo(r: _Reader) -> SloRecord:
    return SloRecord(
        name=r.get_str("name"),
        probe=r.get_str("probe"),
        objective=r.get_str("objective"),
        threshold=r.get_str("threshold"),
        window=r.get_float("window"),
        verdict=r.get_str("verdict"),
        observed=r.get_opt_float("observed", None),
        breached_at=r.get_opt_str("breached_at", None),
        breach_phase=r.get_opt_str("breach_phase", None),
        evaluations=r.get_int("evaluations", 0),
        breaching_evaluations=r.get_int("breaching_evaluations", 0),
        samples=[_sample(s) for s in r.children("samples")],
    )


def _abort(r: _Reader) -> AbortRecord:
    return AbortRecord(
        reason=r.get_str("reason"),
        slo=r.get_opt_str("slo", None),
        observed=r.get_opt_float("observed", None),
        threshold=r.get_opt_str("threshold", None),
        at=r.get_opt_str("at", None),
        t=r.get_float("t"),
        cause=r.get_str("cause", "slo-breach" if r.data.get("slo") else "unexpected-error"),
    )


def _rollback(r: _Reader) -> RollbackRecord:
    return RollbackRecord(
        name=r.get_str("name"),
        ok=r.get_bool("ok"),
        detail=r.get_str("detail", ""),
        started_at=r.get_opt_str("started_at", None),
        ended_at=r.get_opt_str("ended_at", None),
    )


def _check_tree(data: object, source: str) -> None:
    """Every number finite and the nesting at most ``MAX_DEPTH``, anywhere (also in parts no
    field reads, such as a fault's ``revert_state``); iterative, so depth cannot overflow."""
    stack: list[tuple[object, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidInput(f"{source}: not a chaos run journal: nested more than {MAX_DEPTH} "
                               f"levels deep at '{where}'", hint=_HINT)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{source}: not a chaos run journal: '{where or 'the top level'}' "
                               f"is {value}, not a finite number", hint=_HINT)
        if isinstance(value, dict):
            stack += ((v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack += ((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))


def record_from_dict(data: object, source: str = "journal") -> RunRecord:
    """Rebuild a ``RunRecord`` from the parsed JSON of ``RunRecord.to_dict``."""
    _check_tree(data, source)
    r = _Reader(source, "", data)
    status_text = r.get_str("status")
    try:
        status = Status(status_text)
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise r.error(f"'status' is '{status_text}', expected one of {allowed}") from None
    abort_data = r.data.get("abort", _MISSING)
    if abort_data is _MISSING:
        raise r.error("it has no key 'abort'")
    probes = r.get_obj("probes")
    return RunRecord(
        run_id=r.get_str("run_id"),
        experiment=r.get_str("experiment"),
        experiment_file=r.get_opt_str("experiment_file", None),
        status=status,
        started_at=r.get_opt_str("started_at"),
        ended_at=r.get_opt_str("ended_at"),
        phase=r.get_str("phase", "preflight"),
        phases=[p.data for p in r.children("phases", [])],
        message=r.get_str("message", ""),
        abort=None if abort_data is None else _abort(r.child("abort", abort_data)),
        faults=[_fault(f) for f in r.children("faults")],
        slos=[_slo(s) for s in r.children("slos")],
        probes={
            name: [_sample(s) for s in r.child("probes", probes).children(name)]
            for name in probes
        },
        rollbacks=[_rollback(x) for x in r.children("rollbacks", [])],
        errors=r.get_str_list("errors", []),
        duration=r.get_opt_float("duration", None),
        probe_lag=_probe_lag(r),
        preflight_errors=r.get_str_list("preflight_errors", []),
        baseline_breach=r.get_opt_str("baseline_breach", None),
        recovery_judged=r.get_bool("recovery_judged", False),
        recovery_failures=r.get_str_list("recovery_failures", []),
        exit_code=_opt_int(r, "exit_code"),
        verdict=r.get_opt_str("verdict", None),
    )


def _opt_int(r: _Reader, key: str) -> int | None:
    value = r.data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise r.error(f"'{key}' should be an integer, got {_json_type(value)}")
    return value


def _probe_lag(r: _Reader) -> dict[str, dict[str, float]]:
    data = r.data.get("probe_lag", {})  # absent in journals written before it existed
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values())
        for v in data.values()
    ):
        raise r.error("'probe_lag' must map probe names to {n, p50, p99, max} numbers")
    return {str(k): {str(a): float(b) for a, b in v.items()} for k, v in data.items()}


def _reject_constant(name: str) -> float:
    # json accepts NaN/Infinity by default; the journal never writes them, so they mean corruption.
    raise ValueError(f"{name} is not valid JSON")


class _BadNumber(ValueError):
    """A number a journal never holds; ``literal`` is its text, to locate it."""

    def __init__(self, literal: str, why: str) -> None:
        super().__init__(why)
        self.literal = literal


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _BadNumber(literal, f"the number {_short(literal)} is out of range (not finite)")
    return value


def _bounded_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        raise _BadNumber(literal, f"an integer of {digits} digits (at most {_MAX_INT_DIGITS})")
    return int(literal)


def _short(text: str) -> str:
    return text if len(text) <= 30 else f"{text[:27]}..."


# A JSON string, or one of the characters that open or close a level (strings skipped whole).
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _line_col(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - text.rfind("\n", 0, index)
    return f"{line}:{column}"


def _where_too_deep(text: str) -> str:
    """``line:column`` of the first bracket past ``MAX_DEPTH`` levels (stops there), or ''."""
    depth = 0
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return _line_col(text, match.start())
        elif token in "]}":
            depth -= 1
    return ""


def _where_literal(text: str, literal: str) -> str:
    """``line:column`` of the number ``literal`` outside strings, or ''."""
    pattern = re.compile(r'"(?:[^"\\]|\\.)*"|(?<![\w.+-])' + re.escape(literal) + r"(?![\w.])")
    for match in pattern.finditer(text):
        if not match.group(0).startswith('"'):
            return _line_col(text, match.start())
    return ""


def _read_journal(p: Path) -> str:
    """The UTF-8 text of the regular file ``p``, at most ``MAX_JOURNAL_BYTES`` (chaos.trust:
    a FIFO is refused, not waited on, and a device is never read)."""
    try:
        data, _ = trust.read_regular(p, limit=MAX_JOURNAL_BYTES, what="journal file",
                                     limit_says="a journal is at most", chunk=1 << 20)
    except trust.Refused as exc:
        raise InvalidInput(f"{p}: {exc}", hint=_HINT) from None
    return data.decode("utf-8")


def load_record(path: str | Path) -> RunRecord:
    """Read the run journal at ``path``; ``InvalidInput`` says clearly what is wrong with it."""
    p = Path(path)
    try:
        text = _read_journal(p)
    except FileNotFoundError:
        raise InvalidInput(f"{p}: no such file", hint=_HINT) from None
    except IsADirectoryError:
        raise InvalidInput(f"{p}: is a directory, not a journal file", hint=_HINT) from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{p}: not a chaos run journal: not UTF-8 text ({exc.reason})",
                           hint=_HINT) from exc
    except OSError as exc:
        raise InvalidInput(f"{p}: cannot read the journal: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except RecursionError:
        where = _where_too_deep(text)
        raise InvalidInput(f"{p}:{where + ': ' if where else ' '}not a chaos run journal: "
                           f"nested more than {MAX_DEPTH} levels deep", hint=_HINT) from None
    except _BadNumber as exc:
        where = _where_literal(text, exc.literal)
        raise InvalidInput(f"{p}:{where + ': ' if where else ' '}not a chaos run journal: {exc}",
                           hint=_HINT) from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{p}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
            hint=_HINT + "; a journal cut short by a crash is rewritten atomically, so this "
            "file was probably edited or is something else",
        ) from exc
    except ValueError as exc:
        raise InvalidInput(f"{p}: not valid JSON: {exc}", hint=_HINT) from exc
    return record_from_dict(data, str(p))


__all__ = ["load_record", "record_from_dict"]
