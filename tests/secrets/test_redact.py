"""chaos.redact: which values a run's redactor knows, and how text and URLs come out."""

from __future__ import annotations

import base64
import contextvars
import textwrap

import pytest

from chaos import redact
from chaos.engine.faults import describe_exc
from chaos.errors import ExperimentInvalid, PlatformError
from chaos.model import load_experiment_text
from chaos.model.experiment import Experiment
from chaos.redact import Redactor

EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {name: r}
spec:
  secrets: [DB_PASSWORD]
  probes:
    - {name: prom, prometheus: {url: "http://prom:9090", query: up, expect: "== 1",
       bearerTokenEnv: PROM_TOKEN}}
    - name: prom-basic
      prometheus:
        url: "http://prom:9090"
        query: up
        expect: "== 1"
        basicAuth: {usernameEnv: PROM_USER, passwordEnv: PROM_PASS}
    - name: api
      http:
        url: "https://api-user:url-pass-1@api.example:8443/health?apikey=query-key-2&x=1"
        headers: {Authorization: "Bearer header-token-3", Accept: "application/json"}
    - {name: db, command: {argv: [check-db, "--password", "db-pass-4"]}}
  rollbacks:
    - {name: hook, http: {url: "https://hooks.example/services/T0K3N-5?token=hook-q-6"}}
"""
ENV = {"PROM_TOKEN": "prom-token-7\n", "PROM_USER": "prom-user-8", "PROM_PASS": "prom-pass-9",
       "DB_PASSWORD": "db-pass-4", "UNRELATED": "not-a-secret"}


def experiment(text: str = EXPERIMENT) -> Experiment:
    return load_experiment_text(textwrap.dedent(text))


@pytest.fixture
def r() -> Redactor:
    return Redactor.for_run(experiment(), ENV, urls=["http://pg:pg-pass-10@gateway:9091", None])


@pytest.mark.parametrize("secret", [
    "prom-token-7", "prom-user-8", "prom-pass-9", "db-pass-4", "url-pass-1", "query-key-2",
    "header-token-3", "Bearer header-token-3", "/services/T0K3N-5", "hook-q-6", "pg-pass-10",
    base64.b64encode(b"prom-user-8:prom-pass-9").decode(),
    base64.b64encode(b"api-user:url-pass-1").decode(),
    base64.b64encode(b"pg:pg-pass-10").decode(),
])
def test_every_secret_of_the_run_is_masked(r: Redactor, secret: str) -> None:
    assert r.text(f"before {secret} after") == "before *** after"


def test_a_value_with_a_trailing_newline_is_masked_as_echoed(r: Redactor) -> None:
    # What httpx says of a bearer token read with its newline:
    echoed = "Illegal header value b'Bearer prom-token-7\\n'"
    assert r.text(echoed) == "Illegal header value b'Bearer ***'"
    assert r.text("token prom-token-7\n!") == "token ***!"


def test_a_rollback_url_shows_no_path_anywhere(r: Redactor) -> None:
    assert r.text("POST https://hooks.example/services/T0K3N-5?token=hook-q-6 failed") == (
        "POST https://hooks.example/… failed")
    assert r.text("GET https://hooks.example/other") == "GET https://hooks.example/other"


def test_ordinary_words_and_other_variables_are_left_alone(r: Redactor) -> None:
    detail = "status 503 (expected 200): not-a-secret application/json check-db --password"
    assert r.text(detail) == detail


def test_urls_in_text_lose_their_userinfo_and_query_string() -> None:
    plain = Redactor()  # the default: no value known, URLs still cut
    assert plain.text("GET http://u:p@h:1/a/b?token=x, then") == "GET http://h:1/a/b?…, then"
    assert plain.text("see https://h/x?q=1).") == "see https://h/x?…)."
    assert plain.text("postgres://admin:pw@db/app") == "postgres://db/app"
    assert plain.text("no url here: 10.0.0.1:80") == "no url here: 10.0.0.1:80"


def test_url_forms() -> None:
    r = Redactor()
    assert r.url("https://u:p@h:8443/a/b?t=1#f") == "https://h:8443/a/b?…"
    assert r.url("https://u:p@h:8443/a/b?t=1", path=False) == "https://h:8443/…"
    assert r.url("https://h:8443/", path=False) == "https://h:8443/"
    assert r.url("https://h", path=False) == "https://h"
    assert r.url("http://[::1]:9091/x") == "http://[::1]:9091/x"


def test_short_values_are_not_searched_for() -> None:
    r = Redactor(["abc", "abcd"])
    assert r.text("abc abcd") == "abc ***"


def test_extended_adds_a_url_and_keeps_what_was_known(r: Redactor) -> None:
    more = r.extended(urls=["http://other:other-pass-11@gw:9091"])
    assert more.text("other-pass-11 db-pass-4") == "*** ***"
    assert r.text("other-pass-11") == "other-pass-11"


def test_describe_exc_masks_with_the_current_redactor(r: Redactor) -> None:
    def inside() -> str:
        redact.activate(r)
        return describe_exc(PlatformError("login with db-pass-4 to http://u:p@h/x?k=v failed"))

    assert contextvars.copy_context().run(inside) == "login with *** to http://h/x?… failed"
    # Outside that context the default redactor is current again.
    assert describe_exc(ValueError("db-pass-4")) == "ValueError: db-pass-4"


def test_spec_secrets_are_environment_variable_names() -> None:
    exp = experiment(EXPERIMENT.replace("[DB_PASSWORD]", "[DB_PASSWORD, _X1]"))
    assert exp.spec.secrets == ["DB_PASSWORD", "_X1"]
    with pytest.raises(ExperimentInvalid) as info:
        experiment(EXPERIMENT.replace("[DB_PASSWORD]", "[DB_PASSWORD, 1BAD, $HOME]"))
    message = str(info.value)
    assert ":5:" in message and "secrets" in message  # located on the spec.secrets line
    assert experiment(EXPERIMENT.replace("  secrets: [DB_PASSWORD]\n", "")).spec.secrets == []
