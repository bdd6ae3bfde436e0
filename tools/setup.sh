#!/usr/bin/env bash
# Set up promote on a fresh machine and run something, in one command (the README's two set-up commands):
#
#   bash tools/setup.sh example   promote with its runtime dependencies only, then the embedded example
#                                 (promote check examples/tiny_lm/contract.yaml)
#   bash tools/setup.sh test [PYTEST ARGS...]
#                                 the dev extras too, Debian's prometheus, haproxy and chromium (apt-get), the pinned
#                                 vLLM venv (tools/vllm_env.sh), then ruff, lint-imports and pytest: what
#                                 .ci/run runs, in a temporary venv of its own
#
# torch is the CPU build unless the machine has a GPU (tools/torch_choice.py says why and how); both
# commands reuse the venv, so `example` then `test` installs torch once. Environment:
#   PROMOTE_VENV    the venv (default: .venv in the repository; created when missing)
#   PROMOTE_PYTHON  the interpreter that creates it (default: python3)
#   PROMOTE_TORCH   cpu | default | keep: override the torch choice
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-}"
case "$what" in
  example | test) shift ;;
  *) echo "usage: bash tools/setup.sh example | test [pytest args...]" >&2; exit 2 ;;
esac
started=$(date +%s)
say() { echo "setup: $*" >&2; }

# An interpreter-level PYTHONPATH would let the venv import another checkout's code.
unset PYTHONPATH PYTHONHOME
venv="${PROMOTE_VENV:-$PWD/.venv}"
if [ ! -x "$venv/bin/python" ] && [ ! -x "$venv/Scripts/python" ]; then
  say "creating the venv $venv"
  "${PROMOTE_PYTHON:-python3}" -m venv "$venv"
fi
if [ -x "$venv/bin/python" ]; then py="$venv/bin/python"; else py="$venv/Scripts/python"; fi
bin="$(dirname "$py")"

"$py" -m pip install --quiet --upgrade pip
# torch before promote, so pip never picks one for promote's `torch>=2.1` (on Linux PyPI's is CUDA).
torch_args=$("$py" tools/torch_choice.py "$py")  # exit 1, with the reason, when no CPU build is reachable
if [ -n "$torch_args" ]; then
  # shellcheck disable=SC2086 # the words `torch==X [--index-url URL]`
  "$py" -m pip install $torch_args
fi

# Run a command as root: directly, through sudo, or not at all (returns 1).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

# The services the tests run for real: Prometheus (stage 4, tests/prometheus_live.py), HAProxy (`promote
# watch` routing a canary back, tests/watch_parts.py) and headless Chromium (tests/test_browser_report.py).
# Outside CI a missing one skips its tests; under CI=true it fails them. Debian's maintainer scripts would
# start Prometheus and HAProxy as system services: policy-rc.d (exit 101) keeps them from it, and the tests
# start their own servers on free ports.
install_services() {
  local missing=()
  command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1 || ! as_root true; then
    say "${missing[*]} missing and cannot be installed here (needs apt-get and root or sudo): their tests will skip"
    return 0
  fi
  say "installing ${missing[*]} with apt-get"
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    policy=1
  fi
  local status=0
  as_root apt-get update -q || status=$?
  for package in "${missing[@]}"; do
    [ "$status" -eq 0 ] || break
    # Prometheus and HAProxy need nothing they recommend; Chromium keeps its recommends (fonts).
    if [ "$package" = prometheus ] || [ "$package" = haproxy ]; then
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package" || status=$?
    else
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" || status=$?
    fi
  done
  if [ -n "$policy" ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
  return "$status"
}

export VIRTUAL_ENV="$venv" PATH="$bin:$PATH"  # as after `. .venv/bin/activate`
if [ "$what" = example ]; then
  "$py" -m pip install -e .
  say "set up in $(($(date +%s) - started)) s; now the example (about 20 s on a quiet 2-core machine):"
  say "  promote check examples/tiny_lm/contract.yaml   (later: . $venv/bin/activate first)"
  exec "$bin/promote" check examples/tiny_lm/contract.yaml
fi

"$py" -m pip install -e ".[dev]"
install_services
# The pinned vLLM server venv (its own, cached; tests/test_vllm_*.py start servers from it).
bash tools/vllm_env.sh
"$py" -m ruff check src tests examples bench tools
"$bin/lint-imports"
say "set up in $(($(date +%s) - started)) s; now the tests: python -m pytest -q $*"
exec "$py" -m pytest -q "$@"
