"""The ``webhook`` sink: POST each decision as JSON, signed with HMAC-SHA256, to a URL.

For systems promote has no dedicated sink for (a chat-ops bot, a deploy pipeline, a custom router): the body
is the decision's JSON (``Decision.to_json()``, keys sorted, compact), and

* ``X-Promote-Signature: sha256=<hex>`` is HMAC-SHA256 of the exact body bytes under the secret held by the
  environment variable ``secret_env`` names (the scheme GitHub uses for its webhooks). A receiver recomputes
  it over the raw body it received and compares in constant time (docs/watch.md "Sinks"); the header is sent
  to the URL's origin only, and a redirect elsewhere is refused;
* ``X-Promote-Delivery: <sha256 of the body>`` names the delivery, so a receiver can drop a repeat.

The sink is idempotent in the process: a decision already delivered (2xx) is not sent again. ``ok`` is true
iff the receiver answered 2xx; the read-back is the last delivery (there is no remote state to read).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from promote.http import Transport
from promote.redact import strip_url_credentials
from promote.sinks.api import Decision
from promote.sinks.base import BaseSink, TargetError
from promote.sinks.options import Options, one_line

MAX_ANSWER = 64 * 1024
SIGNATURE_HEADER = "X-Promote-Signature"
DELIVERY_HEADER = "X-Promote-Delivery"
KEYS = {
    "url": "the receiver's http(s) URL",
    "secret_env": "the environment variable holding the HMAC-SHA256 signing secret",
    "ca_file": "a CA bundle to verify the receiver's certificate (optional)",
    "timeout_s": "seconds for one delivery, connect to last byte (default 10)",
}


def body_of(decision: Decision) -> bytes:
    return json.dumps(decision.to_json(), sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """The ``X-Promote-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256 under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def build(options: Mapping[str, Any], where: str) -> WebhookSink:
    """The ``SinkFactory`` of ``webhook``."""
    opts = Options("webhook", options, where, KEYS)
    url = str(opts.http_url("url"))
    secret = str(opts.secret("secret_env"))
    ca_file = opts.existing_file("ca_file")
    return WebhookSink(url, secret, ca_file, opts.number("timeout_s", default=10.0, low=0.1, high=300.0))


class WebhookSink(BaseSink):
    name = "webhook"

    def __init__(self, url: str, secret: str, ca_file: str | None, timeout_s: float) -> None:
        self.url, self._secret, self.ca_file, self.timeout_s = url, secret, ca_file, timeout_s
        self.delivered: str | None = None  # the digest of the last decision a receiver took (2xx)

    def __repr__(self) -> str:  # never the secret
        return f"WebhookSink({strip_url_credentials(self.url)!r})"

    def state(self) -> dict[str, Any]:
        return {"url": strip_url_credentials(self.url), "delivered": self.delivered}

    def want(self, decision: Decision) -> str:
        """Every decision is delivered (hold and stop too: a receiver may log them); identified by its digest."""
        return hashlib.sha256(body_of(decision)).hexdigest()

    def satisfied(self, state: dict[str, Any], want: str) -> bool:
        return state.get("delivered") == want

    def describe(self, state: dict[str, Any], want: str) -> str:
        return f"POST the decision to {strip_url_credentials(self.url)} (delivery {want[:12]})"

    def enact(self, state: dict[str, Any], want: str, decision: Decision) -> None:
        body = body_of(decision)
        http = Transport(deadline_s=self.timeout_s, max_body=MAX_ANSWER, credential_origin=self.url,
                         credentials={SIGNATURE_HEADER: signature(self._secret, body)}, verify=self.ca_file or True)
        reply = http.request("POST", self.url, body=body,
                             headers={"Content-Type": "application/json", DELIVERY_HEADER: want})
        if not 200 <= reply.status < 300:
            raise TargetError(f"{strip_url_credentials(self.url)} answered {reply.status} "
                              f"{one_line(reply.reason, 40)}: {one_line(reply.text, 200) or '(empty body)'}")
        self.delivered = want
