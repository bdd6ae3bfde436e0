"""GitHub REST transport: auth, GHES base URL, retries, pagination, typed status errors.

Transport only — no knowledge of comments or reports — on promote's one HTTP layer (promote.http:
total deadline per request, body cap, bounded decompression, redirects). The retry policy stays here
because it is GitHub's own: a rate-limit 403 (retry after a wait) is not a permission 403 (never
retry), and a POST is never blindly re-sent.
The token is a credential of the transport and is never part of a message, a URL or a repr. It is
only ever sent to the API's origin (scheme, host and port of ``GITHUB_API_URL``): an absolute URL
elsewhere — a ``Link: rel="next"`` from a hostile or misconfigured server — is refused with
:class:`ForeignURL` before any request, and so is a redirect to another origin. It is registered
with promote.redact, so an error body that echoes it is masked.
A reply that is not the JSON shape an endpoint promises is :class:`BadResponse`, a GitHubError like
any other, so callers report it as a publishing warning and never crash on it.
"""

from __future__ import annotations

import json as jsonlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from promote import __version__
from promote.http import HttpError, Reply, Transport, origin
from promote.redact import redact_message, register_secret

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
TIMEOUT_S = 30.0  # total deadline of one request: connect, headers and body
MAX_BODY = 32 * 2**20  # a page of 100 comments of 65 536 characters, escaped, fits
MAX_ATTEMPTS = 5
MAX_TOTAL_WAIT_S = 180.0  # cap on all retry waits of one client, then fail soft
RETRY_5XX_METHODS = ("GET", "PATCH", "DELETE", "PUT")  # POST is not idempotent: never blindly re-sent


class GitHubError(Exception):
    """An API call failed. ``status`` is the HTTP status (0: no response)."""

    def __init__(self, message: str, *, status: int = 0, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.status, self.method, self.url = status, method, url


class Unreachable(GitHubError):
    """No HTTP response: DNS, connection refused, TLS, timeout."""


class Forbidden(GitHubError):
    """403 that is not a rate limit: the token lacks a permission (e.g. a fork PR's read-only token)."""


class NotFound(GitHubError):
    """404 (GitHub also answers 404 for private resources the token cannot see)."""


class Unprocessable(GitHubError):
    """422: GitHub refused the payload (e.g. a comment body over 65 536 characters)."""

    @property
    def too_long(self) -> bool:
        return "too long" in str(self).lower()


class RateLimited(GitHubError):
    """Still rate limited after the retries or beyond the wait budget."""


class Unauthorized(GitHubError):
    """401: the token is missing, expired or wrong."""


class ForeignURL(GitHubError):
    """An absolute URL (a pagination link) outside the API origin: never sent the token, never followed."""


class BadResponse(GitHubError):
    """A 2xx reply that is not JSON, or not the JSON shape the endpoint documents."""


_BY_STATUS: dict[int, type[GitHubError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 422: Unprocessable}


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def api_url_from_env(explicit: str | None = None) -> str:
    """``--api-url``, else ``$GITHUB_API_URL`` (GHES: ``https://host/api/v3``), else api.github.com."""
    return (explicit or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")


def _message(response: Reply) -> str:
    return redact_message(_raw_message(response))


def _raw_message(response: Reply) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason or ""
    if not isinstance(body, dict):
        return ""
    details = [e.get("message") or e.get("code") if isinstance(e, dict) else e for e in body.get("errors") or []]
    return "; ".join(str(part) for part in [body.get("message"), *details] if part)


def _rate_limit_wait(response: Reply, now: float) -> float | None:
    """Seconds to wait before retrying a rate-limited response, or None if it is not a rate limit."""
    headers = response.headers
    if response.status_code not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now)
        except ValueError:
            return 60.0
    if response.status_code == 429 or "rate limit" in _message(response).lower():
        return 60.0  # secondary limit without headers: GitHub asks for at least a minute
    return None  # a permission 403: never retried


class GitHubAPI:
    """A small REST client. ``sleep`` and ``clock`` are injectable so tests can observe the waits."""

    def __init__(self, token: str, *, api_url: str | None = None, timeout_s: float = TIMEOUT_S,
                 max_attempts: int = MAX_ATTEMPTS, max_total_wait_s: float = MAX_TOTAL_WAIT_S,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self.api_url = api_url_from_env(api_url)
        self.timeout_s, self.max_attempts, self.max_total_wait_s = timeout_s, max_attempts, max_total_wait_s
        self.waited_s = 0.0
        register_secret(token)  # an error body that echoes the header is masked wherever it is printed
        self._origin = origin(self.api_url)
        self._sleep, self._clock = sleep, clock
        self._transport = Transport(
            deadline_s=timeout_s, max_body=MAX_BODY, credentials={"Authorization": f"Bearer {token}"},
            credential_origin=self.api_url,
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                     "User-Agent": f"promote/{__version__}"})

    def __repr__(self) -> str:  # never show the session headers (the token)
        return f"GitHubAPI({self.api_url!r})"

    def url(self, path_or_url: str) -> str:
        """Absolute URL: paths are joined to the API base; an absolute URL (a pagination link) is used as
        given only on the API's origin — anywhere else it would receive the token (ForeignURL)."""
        shown = urlsplit(path_or_url)
        if shown.scheme or shown.netloc:
            if origin(path_or_url) != self._origin:
                scheme, host, port = origin(path_or_url)
                raise ForeignURL(f"refused to follow a link to {scheme}://{host}:{port}, which is not the API "
                                 f"origin {self.api_url} (the token is sent to the API origin only; set "
                                 "GITHUB_API_URL to the API that serves this repository)", url=f"{scheme}://{host}")
            return path_or_url
        return f"{self.api_url}/{path_or_url.lstrip('/')}"

    def _wait(self, seconds: float, method: str, url: str, status: int) -> None:
        if self.waited_s + seconds > self.max_total_wait_s:
            raise RateLimited(f"{method} {url}: rate limited (HTTP {status}); waiting {seconds:.0f} s more would "
                              f"exceed the {self.max_total_wait_s:.0f} s retry budget", status=status,
                              method=method, url=url)
        self.waited_s += seconds
        self._sleep(seconds)

    def request(self, method: str, path_or_url: str, *, json: Any = None,
                params: dict[str, Any] | None = None) -> Reply:
        """One API call with retries; returns a 2xx/3xx response or raises a typed GitHubError."""
        url = self.url(path_or_url)
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                response = self._send(method, url, json, params)
            except HttpError as exc:
                if exc.kind == "redirect":
                    raise ForeignURL(f"{method} {exc}", method=method, url=url) from None
                # One retry for idempotent calls: a blip is worth a second try, a dead host is not worth
                # minutes of the job.
                if attempt >= 2 or last or method not in RETRY_5XX_METHODS or exc.kind == "too_large":
                    raise Unreachable(f"{method} {url}: GitHub API unreachable ({exc})", method=method,
                                      url=url) from None
                self._wait(1.0, method, url, 0)
                continue
            status = response.status_code
            if status < 400:
                return response
            wait = _rate_limit_wait(response, self._clock())
            if wait is not None and not last:
                self._wait(wait, method, url, status)
                continue
            if status >= 500 and not last and method in RETRY_5XX_METHODS:
                self._wait(2.0 ** attempt, method, url, status)
                continue
            kind = RateLimited if wait is not None else _BY_STATUS.get(status, GitHubError)
            raise kind(f"{method} {url}: HTTP {status}: {_message(response) or response.reason}", status=status,
                       method=method, url=url)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _send(self, method: str, url: str, json: Any, params: dict[str, Any] | None) -> Reply:
        if params:
            url = f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"
        if json is None:
            return self._transport.request(method, url)
        return self._transport.request(method, url, body=jsonlib.dumps(json).encode(),
                                       headers={"Content-Type": "application/json"})

    def request_json(self, method: str, path_or_url: str, *, expect: type, json: Any = None,
                     params: dict[str, Any] | None = None) -> Any:
        """One call whose reply must be JSON of type ``expect`` (dict or list), else BadResponse."""
        response = self.request(method, path_or_url, json=json, params=params)
        url = self.url(path_or_url)
        try:
            body = response.json()
        except ValueError:
            raise BadResponse(f"{method} {url}: HTTP {response.status_code} reply is not JSON "
                              f"({response.headers.get('content-type') or 'no content type'})",
                              status=response.status_code, method=method, url=url) from None
        if not isinstance(body, expect):
            wanted = "an object" if expect is dict else "a list"
            raise BadResponse(f"{method} {url}: expected {wanted} in the JSON reply, got {_json_kind(body)}",
                              status=response.status_code, method=method, url=url)
        return body

    def get_json(self, path_or_url: str, *, params: dict[str, Any] | None = None, expect: type = dict) -> Any:
        return self.request_json("GET", path_or_url, params=params, expect=expect)

    def paginate(self, path: str, *, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a list endpoint, following the Link header's ``rel="next"`` (never built by hand)."""
        url: str | None = self.url(path)
        query: dict[str, Any] | None = {"per_page": 100, **(params or {})}
        while url:
            response = self.request("GET", url, params=query)
            try:
                items = response.json()
            except ValueError:
                raise BadResponse(f"GET {url}: HTTP {response.status_code} reply is not JSON", method="GET",
                                  status=response.status_code, url=url) from None
            if not isinstance(items, list):
                raise BadResponse(f"GET {url}: expected a list in the JSON reply, got {_json_kind(items)}",
                                  status=response.status_code, method="GET", url=url)
            yield from items
            url = response.links.get("next", {}).get("url")
            if url:
                self.url(url)  # a next link off the API origin: ForeignURL before the token could go there
            query = None  # the next link already carries the query
