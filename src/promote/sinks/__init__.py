"""Sinks: where ``promote watch`` enacts a decision (HAProxy, an HTTPRoute, Argo's abort, flagd, a webhook).

The protocol and the decision type live in ``sinks/api.py``; each sink is one module registered in
``SINKS`` by name, like stages and kernel kinds (``registry.py``).
"""
