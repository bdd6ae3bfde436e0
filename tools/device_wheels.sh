#!/usr/bin/env bash
# Wheels the device tool's machines lack for promote (their image has torch, transformers, numba, scipy,
# jinja2, click, pyyaml, requests and onnxruntime; no network there), for bench/bench_gpu.py's run:
#   bash tools/device_wheels.sh            # here, into .device-wheels/ (git-ignored; ~1.3 MB)
#   run(carry=[".device-wheels"], command="python3 -m pip install -q --no-index --find-links .device-wheels \
#       jsonschema datasketches && PYTHONPATH=src python3 bench/bench_gpu.py --out $OUT/gpu.json")
# The device's python3 is CPython 3.12 on x86-64 Linux (../.library/device/KINDS.md); --no-deps keeps what its
# image already holds (numpy, attrs, typing-extensions) from being downloaded again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device-wheels
mkdir -p "$out"
python -m pip download --quiet --only-binary=:all: --no-deps --implementation cp --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --dest "$out" jsonschema jsonschema-specifications referencing rpds-py datasketches
ls -l "$out"
