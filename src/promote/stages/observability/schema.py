"""The `observability` section's JSON Schema fragment (``Observability.schema``)."""

from __future__ import annotations

from promote.contract.observability_spec import METRIC_STATS
from promote.contract.schema_parts import (
    bound_props,
    clause_common,
    described_enum,
    duration,
    number,
    obj,
    stage_section,
    string,
)

OBS_STAT_DOCS = {
    "value": "each matched series judged on its own (one result per series, its labels in the report)",
    "sum": "sum over the matched series (grouped by `by` and the `compare` label)",
    "min": "smallest value over the matched series (grouped likewise)",
    "max": "largest value over the matched series (grouped likewise)",
    "count": "number of matched series (grouped likewise)",
    "mean": "histogram or summary mean: `<name>_sum` / `<name>_count` (grouped likewise)",
    "p50": "histogram median from `<name>_bucket`, interpolated as Prometheus' histogram_quantile does",
    "p90": "histogram 90th percentile (histogram_quantile)",
    "p95": "histogram 95th percentile (histogram_quantile)",
    "p99": "histogram 99th percentile (histogram_quantile)",
    "p99.9": "histogram 99.9th percentile (histogram_quantile)",
}
OBS_STATS = {stat: OBS_STAT_DOCS[stat] for stat in METRIC_STATS}  # a KeyError: document the new statistic
burn_window = obj(
    "A long/short window pair (Google SRE workbook multiwindow burn-rate alerting): the pair fails only when "
    "the burn rate over both windows exceeds `factor`, so a spike that has ended (short window clean) or a blip "
    "too short to matter (long window clean) does not block.",
    {
        "long": duration("Long window (e.g. `1h`): how much of the error budget has burnt."),
        "short": duration("Short window (e.g. `5m`, 1/12 of the long one): is it still burning now."),
        "factor": number("Largest allowed burn rate (error ratio / (1 − objective)) over both windows: 14.4 for "
                         "1h/5m (2 % of a 30-day budget), 6 for 6h/30m (5 %). Omit in relative clauses "
                         "(`max_ratio` bounds those).", exclusiveMinimum=0),
    },
    ["long", "short"],
)
observability_clause = obj(
    "One sign-off check against live monitoring or a snapshot: a PromQL `query`, a `metric` selector, or a "
    "`burn_rate` SLO, with bounds (`max`/`min`), presence (`require`), freshness (`max_age`), or a comparison "
    "of the canary with the stable version (`compare`/`baseline_query` with `max_ratio`/`min_ratio`). Every "
    "result names the series' labels. Missing data never passes (`on_missing`).",
    {
        **clause_common(),
        "query": string("PromQL expression (`source.kind: prometheus`), evaluated at `source.time` (an instant "
                        "query), or over `window` (a range query). It must return an instant vector or a scalar; "
                        "a range vector (`x[5m]`) is a contract error."),
        "metric": string("Metric selector `name{label=\"value\", other=~\"re.*\"}` (operators = != =~ !~); the "
                         "same selector works on a Prometheus source and on a snapshot file. For histograms, name "
                         "the base metric (`vllm:e2e_request_latency_seconds`) with `stat: p99` or `mean`; on "
                         "Prometheus the values are the cumulative ones at `source.time` (use `query:` for rates)."),
        "stat": described_enum(OBS_STATS, "`metric:` only: what is judged. Default `value`."),
        "by": {"type": "array", "items": string("A label name."), "uniqueItems": True,
               "description": "`metric:` with an aggregating stat: labels kept apart (one result per combination), "
                              "like PromQL's `sum by (...)`. Default: aggregate everything (plus the `compare` "
                              "label)."},
        **bound_props,
        "require": {"enum": ["present"], "description": "`present`: at least one series must exist (at "
                    "`source.time`, or within `source.lookback` for a `metric:` on Prometheus)."},
        "max_age": duration("`metric:` only: largest allowed age of each series' newest sample at `source.time` "
                            "(snapshot files: the sample's timestamp, else the file's modification time)."),
        "window": duration("Prometheus only: evaluate over this window ending at `source.time` (a range query) and "
                           "judge `over_time` of each series."),
        "over_time": {"enum": ["max", "min", "mean", "last"], "description": "With `window`: the statistic over "
                      "time judged per series. Default `max` (the worst moment of the window for a `max` bound)."},
        "step": duration("With `window`: the range query's resolution. Default window/60, at least 1s."),
        "compare": obj("Canary vs stable from one query: the result is split by `label`; each `candidate` series is "
                       "divided by the `baseline` series with the same other labels and the ratio is bounded by "
                       "`max_ratio`/`min_ratio`. 0/0 is 1; x/0 is +inf (fails a `max_ratio`).", {
                           "label": string("Label telling the versions apart, e.g. `version`."),
                           "candidate": string("Its value on the canary's series, e.g. `canary`."),
                           "baseline": string("Its value on the stable version's series, e.g. `stable`."),
                       }, ["label", "candidate", "baseline"]),
        "baseline_query": string("Prometheus only: PromQL for the baseline (stable) side; the clause's `query` is the "
                                 "candidate side. Series are paired by identical labels (a single unlabelled "
                                 "baseline applies to every candidate series)."),
        "max_ratio": number("Relative clauses: largest allowed candidate / baseline (e.g. 1.2: the canary may burn "
                            "at most 20 % faster than stable).", minimum=0),
        "min_ratio": number("Relative clauses: smallest allowed candidate / baseline.", minimum=0),
        "burn_rate": obj("Prometheus only: SLO burn rate = error ratio over a window / (1 − objective). Absolute: "
                         "each window pair fails when both windows burn faster than its `factor`. With `compare` "
                         "(or `baseline_query`): the candidate's burn rate over the baseline's in each window, "
                         "bounded by `max_ratio` (fails when both windows of a pair exceed it).", {
                             "objective": number("SLO objective as a fraction, e.g. 0.999 (the error budget is "
                                                 "0.001).", exclusiveMinimum=0, exclusiveMaximum=1),
                             "errors": string("PromQL for the rate of bad events, with `{{window}}` where the "
                                              "range goes: `sum(rate(requests_total{code=~\"5..\"}[{{window}}]))`."
                                              " Keep the `compare` label (`sum by (version)`) in relative clauses."),
                             "total": string("PromQL for the rate of all events, with `{{window}}`."),
                             "windows": {"type": "array", "items": burn_window, "minItems": 1,
                                         "description": "Window pairs. Default: 1h/5m at 14.4 and 6h/30m at 6 "
                                                        "(SRE workbook, 30-day budget). Tests and short canaries "
                                                        "scale them down (docs/observability.md)."},
                         }, ["objective", "errors", "total"]),
        "on_missing": {"enum": ["fail", "inconclusive", "skip"], "description": "Status when there is no data (no "
                       "series, or no candidate/baseline pair): `fail` (default: fails closed), `inconclusive` "
                       "(the policy decides; the default policy blocks), `skip` (reported as skipped, never as "
                       "pass)."},
        "severity": {"enum": ["fail", "warn"], "description": "Status a violated clause gets. Default `fail`."},
    },
    ["id"],
)


SECTION = stage_section(
    "observability", ": live monitoring (a Prometheus HTTP API) or exposition-format snapshot files. Reads "
    "no eval set and runs no kernel: a contract whose only stage is this one needs no `reference`, `candidate` "
    "or `data` (and never reads `data.path` when it has them). See "
    "docs/observability.md.",
    {
        "source": obj("Where metrics are read from.", {
            "kind": {"enum": ["prometheus", "file"], "description": "`prometheus`: a Prometheus HTTP API "
                     "(`/api/v1/query`, `/api/v1/query_range`). `file`: Prometheus text or OpenMetrics snapshot "
                     "files (e.g. the runtime stage's `--metrics-out`), read with prometheus_client's parser."},
            "url": string("Prometheus base URL, e.g. `http://127.0.0.1:9090` (`kind: prometheus`)."),
            "path": {"description": "`kind: file`: snapshot file(s), relative to the contract file; several "
                     "files are read as one (a series in two files is an error).",
                     "oneOf": [string("One snapshot file."),
                               {"type": "array", "items": string("A snapshot file."), "minItems": 1,
                                "description": "Several snapshot files."}]},
            "time": {"type": ["string", "number"], "description": "Evaluation time: unix seconds or RFC 3339 "
                     "(`2026-01-02T03:04:05Z`). Default: now. Recorded in the report."},
            "timeout": duration("Total deadline of each request, connect to last byte (`kind: prometheus`). "
                                "Default `10s`."),
            "lookback": duration("How far back `require: present` and `max_age` look for a `metric:`'s newest "
                                 "sample on Prometheus. Default `1h`."),
            "tls_verify": {"type": "boolean", "description": "Verify the server's TLS certificate. Default true."},
            "ca_file": string("CA bundle to verify the server with (relative to the contract file)."),
            "auth": obj("Credentials, read from environment variables whose names are given here (the values are "
                        "never printed or written to a report).", {
                            "kind": {"enum": ["basic", "bearer"], "description": "`basic`: HTTP basic auth; "
                                     "`bearer`: `Authorization: Bearer <token>`."},
                            "username_env": string("`basic`: variable holding the user name."),
                            "password_env": string("`basic`: variable holding the password."),
                            "token_env": string("`bearer`: variable holding the token."),
                        }, ["kind"]),
        }, ["kind"]),
    },
    observability_clause,
)
