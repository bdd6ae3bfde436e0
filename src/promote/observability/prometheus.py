"""A small Prometheus HTTP API client: instant and range queries, Prometheus' own errors shown.

Why not a client library: we need exactly two endpoints and precise control over what a failure
becomes. Four kinds of failure, each with its exit code (docs/cli.md):

* the server cannot be reached, times out, or answers with something that is not the API →
  ``PrometheusUnavailable`` (exit 3, the URL named);
* 401/403 → ``PrometheusAuthError`` (exit 3, which credentials were sent, never their values);
* ``bad_data`` (a PromQL syntax error, a bad parameter) → ``PrometheusQueryError`` with
  ``contract_error`` true: the contract must change (exit 2), Prometheus' message quoted;
* other API errors (``execution``, ``timeout``, ``unavailable`` …) → ``PrometheusQueryError``
  (exit 3): the query was valid, evaluating it failed.

Credentials come from environment variables named in the contract; their values go only into the
request headers (``requests`` builds them) and are registered with ``redact`` so an error message
that echoes them is masked anyway.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import requests

from promote.errors import EvaluationError
from promote.observability.series import Series
from promote.redact import register_secret


class PrometheusUnavailable(EvaluationError):
    """No usable answer from the server (exit 3)."""


class PrometheusAuthError(EvaluationError):
    """The server refused the credentials (exit 3)."""


class PrometheusQueryError(EvaluationError):
    """Prometheus answered ``status: error``; ``contract_error`` when the query itself is wrong."""

    def __init__(self, message: str, *, error_type: str, error: str, http_status: int) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error = error
        self.http_status = http_status

    @property
    def contract_error(self) -> bool:
        return self.error_type == "bad_data"


@dataclass
class QueryResult:
    """The ``data`` of a successful answer: ``result_type`` vector|matrix|scalar|string, series (a
    scalar is one unlabelled series), and the ``warnings``/``infos`` Prometheus attached."""

    result_type: str
    series: list[Series]
    warnings: list[str] = field(default_factory=list)


def _number(text: Any) -> float:
    """Sample values are strings so ``NaN``/``+Inf`` survive JSON; ``float`` reads all of them."""
    return float(text)


def _parse(data: dict[str, Any]) -> tuple[str, list[Series]]:
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        return kind, [Series({}, [(float(result[0]), _number(result[1]) if kind == "scalar" else math.nan)])]
    if kind == "vector":
        return kind, [Series(dict(r.get("metric", {})), [(float(r["value"][0]), _number(r["value"][1]))])
                      for r in result if "value" in r]
    if kind == "matrix":
        return kind, [Series(dict(r.get("metric", {})), [(float(t), _number(v)) for t, v in r.get("values", [])])
                      for r in result]
    raise ValueError(f"unknown resultType {kind!r}")


class PrometheusClient:
    """``query`` / ``query_range`` against one server; a ``requests.Session`` reused for all clauses."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, verify: bool | str = True,
                 auth: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.verify = verify
        self.auth_text = "no credentials"
        self._auth(auth or {})

    def _auth(self, auth: dict[str, str]) -> None:
        kind = auth.get("kind")
        if kind is None:
            return
        names = [auth.get("username_env"), auth.get("password_env")] if kind == "basic" else [auth.get("token_env")]
        missing = [n for n in names if not n or not os.environ.get(n)]
        if missing:
            raise EvaluationError(f"`observability.source.auth` ({kind}) reads ${', $'.join(str(n) for n in missing)}"
                                  " but it is not set (or empty); export it before `promote check`")
        values = [os.environ[n] for n in names]  # type: ignore[index]
        for value in values:
            register_secret(value)
        if kind == "basic":
            self.session.auth = (values[0], values[1])
        else:
            self.session.headers["Authorization"] = f"Bearer {values[0]}"
        self.auth_text = f"{kind} credentials from ${', $'.join(str(n) for n in names)}"

    def query(self, expr: str, at: float) -> QueryResult:
        """Instant query at unix time ``at`` (``/api/v1/query``)."""
        return self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> QueryResult:
        """Range query over ``[start, end]`` every ``step_s`` seconds (``/api/v1/query_range``)."""
        return self._get("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{max(step_s, 0.001):g}"})

    def _get(self, path: str, params: dict[str, str]) -> QueryResult:
        endpoint = self.url + path
        try:
            # POST (form-encoded) as Prometheus allows: long queries never hit URL length limits.
            response = self.session.post(endpoint, data=params, timeout=self.timeout_s)
        except requests.exceptions.SSLError as exc:
            raise PrometheusUnavailable(f"TLS verification failed for Prometheus at {self.url}: {exc}; set "
                                        "`source.ca_file` to its CA bundle (or `tls_verify: false` on a trusted "
                                        "network)") from None
        except requests.exceptions.Timeout:
            raise PrometheusUnavailable(f"Prometheus at {self.url} did not answer {path} within {self.timeout_s:g}s "
                                        "(`source.timeout`)") from None
        except requests.exceptions.RequestException as exc:
            reason = type(exc).__name__ if not str(exc) else str(exc).split(": ")[-1][:200]
            raise PrometheusUnavailable(f"cannot reach Prometheus at {self.url} ({reason}); check "
                                        "`observability.source.url` and that the server is up") from None
        if response.status_code in (401, 403):
            what = "rejected the credentials" if response.status_code == 401 else "forbids this request"
            raise PrometheusAuthError(f"Prometheus at {self.url} {what} (HTTP {response.status_code}; sent "
                                      f"{self.auth_text}); set `observability.source.auth` and the environment "
                                      "variables it names to credentials allowed to query")
        try:
            body = response.json()
        except ValueError:
            raise PrometheusUnavailable(f"{endpoint} answered HTTP {response.status_code} with a body that is not "
                                        "JSON: is `source.url` the Prometheus base URL (without /api/v1)?") from None
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            raise PrometheusUnavailable(f"{endpoint} answered HTTP {response.status_code} without a Prometheus API "
                                        "envelope (`status`); is `source.url` a Prometheus server?")
        if body["status"] == "error":
            error_type, error = str(body.get("errorType", "")), str(body.get("error", ""))
            raise PrometheusQueryError(f"Prometheus rejected the query ({error_type}, HTTP "
                                       f"{response.status_code}): {error}", error_type=error_type, error=error,
                                       http_status=response.status_code)
        try:
            kind, series = _parse(body.get("data") or {})
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusUnavailable(f"{endpoint} answered a `data` block promote cannot read ({exc})") from None
        notes = [str(w) for w in body.get("warnings") or []] + [str(i) for i in body.get("infos") or []]
        return QueryResult(kind, series, notes)
