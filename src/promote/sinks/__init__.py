"""Sinks: where ``promote watch`` enacts a decision (HAProxy, an HTTPRoute, Argo's abort, flagd, a webhook).

The protocol and the decision type live in ``sinks/api.py``; each sink is one module registered in
``SINKS`` by name, like stages and kernel kinds (``registry.py``).
"""

from promote.registry import Lazy
from promote.sinks.api import SINKS

# Built-in sinks, each imported on first use (a plug-in registers its own the same way).
for _kind, _module in (("haproxy", "haproxy"), ("httproute", "httproute"), ("argo-abort", "argo"),
                       ("flagd", "flagd"), ("webhook", "webhook")):
    if _kind not in SINKS:
        SINKS.register(_kind, Lazy(f"promote.sinks.{_module}:build"))
