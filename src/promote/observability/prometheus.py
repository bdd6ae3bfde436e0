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
request headers, sent to the origin of ``source.url`` only (never along a redirect elsewhere), and
are registered with ``redact`` — the Basic header's base64 too — so an error message that echoes
them is masked anyway.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from promote.errors import EvaluationError
from promote.http import HttpError, Reply, Transport, basic_auth
from promote.observability.series import Series
from promote.redact import register_secret

#: The most one query's answer may take (after decompression); a larger one is refused (exit 3).
MAX_BODY = 64 * 2**20


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


def _parse(data: Any) -> tuple[str, list[Series]]:
    if not isinstance(data, dict):
        raise TypeError(f"`data` is {type(data).__name__}, not an object")
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("vector", "matrix") and not (isinstance(result, list) and all(isinstance(r, dict) for r in result)):
        raise TypeError("`result` is not a list of objects")
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
    """``query`` / ``query_range`` against one server, through promote's HTTP layer (promote.http): the
    credentials go to ``url``'s origin only, ``timeout_s`` is each request's total deadline and an
    answer over :data:`MAX_BODY` is refused."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, verify: bool | str = True,
                 auth: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.auth_text = "no credentials"
        credentials = self._auth(auth or {})
        self.transport = Transport(deadline_s=timeout_s, max_body=MAX_BODY, credentials=credentials,
                                   credential_origin=self.url, verify=verify)

    def _auth(self, auth: dict[str, str]) -> dict[str, str]:
        kind = auth.get("kind")
        if kind is None:
            return {}
        names = [auth.get("username_env"), auth.get("password_env")] if kind == "basic" else [auth.get("token_env")]
        missing = [n for n in names if not n or not os.environ.get(n)]
        if missing:
            raise EvaluationError(f"`observability.source.auth` ({kind}) reads ${', $'.join(str(n) for n in missing)}"
                                  " but it is not set (or empty); export it before `promote check`")
        values = [os.environ[n] for n in names]  # type: ignore[index]
        for value in values:
            register_secret(value)
        self.auth_text = f"{kind} credentials from ${', $'.join(str(n) for n in names)}"
        if kind == "basic":
            return {"Authorization": basic_auth(values[0], values[1])}
        register_secret(f"Bearer {values[0]}")
        return {"Authorization": f"Bearer {values[0]}"}

    def query(self, expr: str, at: float) -> QueryResult:
        """Instant query at unix time ``at`` (``/api/v1/query``)."""
        return self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> QueryResult:
        """Range query over ``[start, end]`` every ``step_s`` seconds (``/api/v1/query_range``)."""
        return self._get("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{max(step_s, 0.001):g}"})

    def _post(self, path: str, params: dict[str, str]) -> Reply:
        try:
            # POST (form-encoded) as Prometheus allows: long queries never hit URL length limits.
            return self.transport.request("POST", self.url + path, body=urlencode(params).encode(),
                                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        except HttpError as exc:
            if exc.kind == "tls":
                raise PrometheusUnavailable(f"TLS verification failed for Prometheus at {self.url}: {exc}; set "
                                            "`source.ca_file` to its CA bundle (or `tls_verify: false` on a trusted "
                                            "network)") from None
            if exc.kind == "timeout":
                raise PrometheusUnavailable(f"Prometheus at {self.url} did not answer {path} within "
                                            f"{self.timeout_s:g}s (`source.timeout`: the total deadline of a "
                                            "request, connect to last byte)") from None
            if exc.kind in ("too_large", "redirect", "protocol", "url"):
                raise PrometheusUnavailable(f"Prometheus at {self.url}: {exc}") from None
            raise PrometheusUnavailable(f"cannot reach Prometheus at {self.url} ({exc}); check "
                                        "`observability.source.url` and that the server is up") from None

    def _get(self, path: str, params: dict[str, str]) -> QueryResult:
        response = self._post(path, params)
        endpoint = response.url
        if response.status_code in (401, 403):
            what = "rejected the credentials" if response.status_code == 401 else "forbids this request"
            raise PrometheusAuthError(f"Prometheus at {self.url} {what} (HTTP {response.status_code}; sent "
                                      f"{self.auth_text}); set `observability.source.auth` and the environment "
                                      "variables it names to credentials allowed to query")
        try:
            body = response.json()
        except (ValueError, RecursionError):
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
            kind, series = _parse(body.get("data"))
            notes = [str(w) for w in _notes(body.get("warnings"))] + [str(i) for i in _notes(body.get("infos"))]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise PrometheusUnavailable(f"{endpoint} answered a `data` block promote cannot read "
                                        f"({type(exc).__name__}: {str(exc)[:200]})") from None
        return QueryResult(kind, series, notes)


def _notes(value: Any) -> list[Any]:
    """``warnings``/``infos``: a list of strings, or absent."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"`warnings`/`infos` is {type(value).__name__}, not a list")
    return value
