"""Where a Kubernetes object sink reads and merge-patches its object: a manifest file, or the API server.

Why both: a cluster API is what routes traffic now; a manifest file in a GitOps repository is what Argo CD or
Flux will apply. Either way the change is an RFC 7386 JSON merge patch (``Content-Type:
application/merge-patch+json``), and the object the patch produces is validated against the CRD's schema
before it is written or sent (``sinks/schemas.py``).

* **file**: the object as JSON (``.json``) or YAML (any other suffix), read as a regular file of bounded size,
  patched here and rewritten atomically (``atomic.py``); the read-back reads the file again.
* **url**: the object's API URL (``https://HOST/apis/GROUP/VERSION/namespaces/NS/KIND/NAME``). ``GET`` it,
  ``PATCH`` it (or its ``/status`` subresource) through ``http.py``: a total deadline, a capped body, and the
  bearer token — from the environment variable the options name — sent to that URL's origin only, never shown.
  The patch carries the ``metadata.resourceVersion`` it was computed from where the sink asks, so a change
  made meanwhile by someone else is a 409 conflict, not silently overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from promote.atomic import write_text_atomic
from promote.bounded import MIB, read_regular
from promote.http import Transport
from promote.sinks.base import TargetError
from promote.sinks.options import Options, one_line
from promote.sinks.schemas import problems

MAX_OBJECT = 4 * MIB
TARGET_KEYS = {
    "file": "a manifest file holding the object (JSON, or YAML), rewritten atomically; or give `url`",
    "url": "the object's Kubernetes API URL (https://HOST/apis/GROUP/VERSION/namespaces/NS/PLURAL/NAME); or `file`",
    "token_env": "the environment variable holding the API bearer token (with `url`; optional)",
    "ca_file": "a CA bundle to verify the API server's certificate (with `url`; optional)",
    "timeout_s": "seconds for one request to the API server, connect to last byte (default 10)",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: a patch object merges key by key, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def build_target(opts: Options, schema: str) -> FileObject | ApiObject:
    """The file or API object named by ``file``/``url`` (exactly one), checked against ``schema`` on write."""
    if opts.has("file") == opts.has("url"):
        raise opts.fail("file" if opts.has("file") else "url",
                        "and `url` exclude each other: give one" if opts.has("file") else
                        "or `file` is required: the object's API URL, or a manifest file holding it")
    timeout = opts.number("timeout_s", default=10.0, low=0.1, high=300.0)
    if opts.has("file"):
        for key in ("token_env", "ca_file"):
            if opts.has(key):
                raise opts.fail(key, "only applies with `url`; a file target needs no credentials")
        return FileObject(Path(str(opts.text("file"))), schema)
    url = str(opts.http_url("url")).rstrip("/")
    token = opts.secret("token_env", required=False)
    ca_file = opts.existing_file("ca_file")
    if token and url.lower().startswith("http://") and not url.lower().startswith(("http://127.", "http://localhost")):
        raise opts.fail("url", "is plain http:// with a bearer token: use https:// so the token is not sent in clear")
    return ApiObject(url, token, ca_file, timeout, schema)


def check(schema: str, obj: Any, where: str) -> None:
    found = problems(schema, obj)
    if found:
        raise TargetError(f"the document promote would write to {where} is not a valid {schema} (schema "
                          f"schemas/sinks/): {'; '.join(found)}")


class FileObject:
    def __init__(self, path: Path, schema: str) -> None:
        self.path, self.schema = path, schema

    def describe(self) -> str:
        return str(self.path)

    def get(self) -> dict[str, Any]:
        data = read_regular(self.path, MAX_OBJECT)
        try:
            obj = json.loads(data) if self.path.suffix == ".json" else yaml.safe_load(data)
        except (ValueError, yaml.YAMLError, RecursionError) as exc:
            raise TargetError(f"{self.path} is not valid {'JSON' if self.path.suffix == '.json' else 'YAML'}: "
                              f"{one_line(exc, 200)}") from None
        if not isinstance(obj, dict):
            raise TargetError(f"{self.path} does not hold one object (a mapping)")
        return obj

    def patch(self, patch: dict[str, Any], *, subresource: str | None = None, current: dict[str, Any] | None = None) \
            -> None:
        self.replace(merge_patch(self.get(), patch))  # the file as it is now: the whole object lives in it, status too

    def replace(self, obj: dict[str, Any]) -> None:
        """Write ``obj`` as the whole file (validated first), atomically, in the file's own format."""
        check(self.schema, obj, str(self.path))
        text = json.dumps(obj, indent=2) + "\n" if self.path.suffix == ".json" \
            else yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
        write_text_atomic(self.path, text)


class ApiObject:
    def __init__(self, url: str, token: str | None, ca_file: str | None, timeout_s: float, schema: str) -> None:
        self.url, self.schema = url, schema
        self.http = Transport(deadline_s=timeout_s, max_body=MAX_OBJECT, credential_origin=url,
                              credentials={"Authorization": f"Bearer {token}"} if token else None,
                              headers={"Accept": "application/json"}, verify=ca_file or True)

    def __repr__(self) -> str:  # never the token
        return f"ApiObject({self.url!r})"

    def describe(self) -> str:
        return self.url

    def get(self) -> dict[str, Any]:
        reply = self.http.request("GET", self.url)
        if reply.status != 200:
            raise TargetError(f"GET {self.url} answered {reply.status} {one_line(reply.reason, 40)}: "
                              f"{_status_message(reply.body)}")
        try:
            obj = reply.json()
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            raise TargetError(f"GET {self.url} did not answer a JSON document promote can read") from None
        if not isinstance(obj, dict):
            raise TargetError(f"GET {self.url} did not answer one object")
        return obj

    def patch(self, patch: dict[str, Any], *, subresource: str | None = None, current: dict[str, Any] | None = None) \
            -> None:
        check(self.schema, merge_patch(current if current is not None else self.get(), patch), self.url)
        body = json.dumps(patch).encode()
        headers = {"Content-Type": "application/merge-patch+json"}
        url = f"{self.url}/{subresource}" if subresource else self.url
        reply = self.http.request("PATCH", url, body=body, headers=headers)
        if reply.status == 404 and subresource:  # no such subresource (an older CRD): patch the object itself
            url = self.url
            reply = self.http.request("PATCH", url, body=body, headers=headers)
        if reply.status == 409:
            raise TargetError(f"PATCH {url} answered 409 Conflict: the object changed since it was read; the next "
                              "window reads it again")
        if not 200 <= reply.status < 300:
            raise TargetError(f"PATCH {url} answered {reply.status} {one_line(reply.reason, 40)}: "
                              f"{_status_message(reply.body)}")


def _status_message(body: bytes) -> str:
    """The ``message`` of a Kubernetes ``Status`` answer, else the start of the body (one line)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return one_line(data["message"], 200)
    return one_line(body.decode("utf-8", "replace"), 200) or "(empty body)"
