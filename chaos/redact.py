"""Keeping secrets out of everything a run writes: the journal, the reports, stdout, the logs.

A :class:`Redactor` is built once per run (:meth:`Redactor.for_run`) from the experiment and the
environment. The secret values it knows:

- the values of the environment variables listed under ``spec.secrets``, and of those a probe
  reads credentials from: any parameter named ``...Env`` (``bearerTokenEnv``,
  ``basicAuth.usernameEnv`` / ``passwordEnv``), with the base64 ``user:password`` of a
  ``basicAuth`` (what goes into its header);
- in every URL of the experiment (and ``--pushgateway``): the userinfo (and its base64, the Basic
  auth header a URL's userinfo becomes) and the query string and its values; for an HTTP
  rollback, whose URL is often a webhook with its token in the path, the path as well (and in
  text, that URL is shown as ``scheme://host[:port]/…``);
- the header values of HTTP probes and rollbacks (not those of content-negotiation headers such
  as ``Accept``), and the credential after an ``Authorization`` scheme word.

:meth:`Redactor.text` writes every URL in the text without its userinfo and its query string
(``?…``), then replaces each secret value (as given, stripped of surrounding whitespace,
backslash-escaped as in a ``repr``, and percent-encoded) by ``***``. :meth:`Redactor.url` is how a
detail shows a URL: ``scheme://host[:port]/path?…``, or with ``path=False`` (rollbacks, webhooks)
``scheme://host[:port]/…``. Values shorter than :data:`MIN_SECRET` characters are not searched
for: they would mask ordinary words.

The run's redactor is made current with :func:`activate` (``chaos run`` does it right after
loading the experiment); :func:`current` gives it to whoever builds a detail: probe drivers,
rollbacks, the Pushgateway push, the engine's ``describe_exc``. Without one, the default still
hides the userinfo and query string of every URL. Pure: no I/O, nothing but the standard library
at import.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

if TYPE_CHECKING:
    from chaos.model.experiment import Experiment

__all__ = ["MASK", "MIN_SECRET", "Redactor", "activate", "current"]

MASK = "***"
#: Shorter values are not searched for (a secret of 3 characters is not one, and masking every
#: "abc" in every detail would make the details useless).
MIN_SECRET = 4

# Headers whose values say how to talk, not who is talking.
_PLAIN_HEADERS = frozenset({
    "accept", "accept-encoding", "accept-language", "cache-control", "connection",
    "content-length", "content-type", "host", "user-agent",
})
# scheme://[userinfo@]rest, up to whitespace, a quote, a bracket or a backslash (repr escapes).
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>\\`]+")
_TRAILING = ".,;:!)]}"


def _forms(value: str) -> set[str]:
    """The ways a value shows up in text: as is, stripped, repr-escaped, percent-encoded."""
    out = set()
    for v in (value, value.strip()):
        out.add(v)
        out.add(v.encode("unicode_escape").decode("ascii"))
        out.add(quote(v, safe=""))
        out.add(quote(v))
    return {f for f in out if len(f) >= MIN_SECRET}


def _compile(forms: frozenset[str]) -> re.Pattern[str] | None:
    ordered = sorted(forms, key=lambda s: (-len(s), s))  # longest first: no half masks
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class Redactor:
    """Masks a run's secret values in text and shows URLs without what they carry."""

    def __init__(self, secrets: Iterable[str] = (), *, urls: Iterable[str] = (),
                 opaque_urls: Iterable[str] = ()) -> None:
        found: set[str] = set()
        for value in secrets:
            found |= _forms(value)
        for url in urls:
            found |= _forms_of_url(url, with_path=False)
        opaque: set[tuple[str, str]] = set()
        for url in opaque_urls:
            found |= _forms_of_url(url, with_path=True)
            origin = _origin_path(url)
            if origin is not None:
                opaque.add(origin)
        self._secrets = frozenset(found)
        self._pattern = _compile(self._secrets)
        self._opaque = frozenset(opaque)

    @classmethod
    def for_run(cls, experiment: Experiment, environ: Mapping[str, str], *,
                urls: Iterable[str | None] = ()) -> Redactor:
        """The redactor of one run: what ``experiment`` marks or uses as secret, read from
        ``environ``; ``urls`` are more URLs the run talks to (``--pushgateway``)."""
        spec = experiment.spec
        names: set[str] = set(spec.secrets)
        values: list[str] = []
        plain_urls: list[str] = [u for u in urls if u]
        opaque: list[str] = []
        for probe in spec.probes:
            _collect(probe.params, environ, names, values, plain_urls)
        for rollback in spec.rollbacks:
            if rollback.http is not None:
                opaque.append(rollback.http.url)
                values += _header_secrets(rollback.http.headers)
        values += [environ[n] for n in sorted(names) if environ.get(n)]
        return cls(values, urls=plain_urls, opaque_urls=opaque)

    def extended(self, secrets: Iterable[str] = (), *, urls: Iterable[str] = ()) -> Redactor:
        """This redactor and more: secret values, and URLs whose userinfo and query are."""
        merged = Redactor(secrets, urls=urls)
        merged._secrets |= self._secrets
        merged._pattern = _compile(merged._secrets)
        merged._opaque = self._opaque
        return merged

    @property
    def secrets(self) -> frozenset[str]:
        """Every form of every secret value searched for (for tests and debugging)."""
        return self._secrets

    def mask(self, text: str) -> str:
        """``text`` with every known secret value replaced by ``***`` (URLs left as they are)."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def text(self, text: str) -> str:
        """``text`` with every URL shown without its userinfo and query string (an HTTP
        rollback's URL without its path), and every known secret masked."""
        return self.mask(_URL.sub(self._url_match, text))

    def url(self, url: str, *, path: bool = True) -> str:
        """How a detail shows ``url``: ``scheme://host[:port]/path?…`` (no userinfo, no query
        string); with ``path=False`` only ``scheme://host[:port]/…``."""
        return self.mask(_shown(url, path=path))

    def _url_match(self, match: re.Match[str]) -> str:
        found = match.group(0)
        stripped = found.rstrip(_TRAILING)
        where = _origin_path(stripped)
        opaque = where is not None and any(
            where[0] == host and where[1].startswith(path) for host, path in self._opaque)
        return _shown(stripped, path=not opaque) + found[len(stripped):]


def _origin_path(url: str) -> tuple[str, str] | None:
    """(host[:port] in lower case, path without a trailing slash) of a URL, None if it is not
    one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.netloc:
        return None
    return parts.netloc.rpartition("@")[2].lower(), parts.path.rstrip("/")


def _shown(url: str, *, path: bool) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    origin = f"{parts.scheme}://{host}"
    if not path:
        return origin + ("/…" if parts.path.strip("/") or parts.query or parts.fragment
                         else parts.path)
    return origin + parts.path + ("?…" if parts.query else "")


def _forms_of_url(url: str, *, with_path: bool) -> set[str]:
    """The secrets a URL carries: userinfo, query string and values, and (``with_path``) its
    path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _forms(url)
    found: set[str] = set()
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        found |= _forms(userinfo) | _forms(unquote(userinfo))
        if colon:
            found |= _forms(password) | _forms(unquote(password))
        found |= _forms(_basic(unquote(user), unquote(password)))
    if parts.query:
        found |= _forms(parts.query)
        for _, value in parse_qsl(parts.query, keep_blank_values=True):
            found |= _forms(value)
    if with_path and parts.path.strip("/"):
        found |= _forms(parts.path) | _forms(parts.path.strip("/")) | _forms(unquote(parts.path))
    return found


def _header_secrets(headers: Mapping[str, str] | None) -> list[str]:
    out: list[str] = []
    for name, value in (headers or {}).items():
        if name.lower() in _PLAIN_HEADERS:
            continue
        out.append(value)
        scheme, space, credential = value.strip().partition(" ")
        if space and scheme.isalpha():
            out.append(credential)  # "Bearer <token>": the token alone too
    return out


def _collect(params: Any, environ: Mapping[str, str], names: set[str], values: list[str],
             urls: list[str]) -> None:
    """What a probe's parameters hold that is secret, found by shape rather than by kind: a URL
    (``url``), ``headers``, any ``..._env`` name (and a basic-auth pair's header)."""
    from pydantic import BaseModel

    if not isinstance(params, BaseModel):
        return
    env_names: dict[str, str] = {}
    for field in type(params).model_fields:
        value = getattr(params, field)
        if isinstance(value, BaseModel):
            _collect(value, environ, names, values, urls)
        elif field.endswith("_env") and isinstance(value, str):
            names.add(value)
            env_names[field] = value
        elif field == "url" and isinstance(value, str):
            urls.append(value)
        elif field == "headers" and isinstance(value, Mapping):
            values.extend(_header_secrets(value))
    user = environ.get(env_names.get("username_env", ""))
    password = environ.get(env_names.get("password_env", ""))
    if user is not None and password is not None:
        values.append(_basic(user, password))


_DEFAULT = Redactor()
_CURRENT: ContextVar[Redactor | None] = ContextVar("chaos_redactor", default=None)


def activate(redactor: Redactor) -> None:
    """Make ``redactor`` the current one (for this context and the tasks started from it)."""
    _CURRENT.set(redactor)


def current() -> Redactor:
    """The run's redactor; without one, a redactor that knows no value but still hides URL
    userinfo and query strings."""
    return _CURRENT.get() or _DEFAULT
