"""A hostile stand-in for promote's vLLM worker (kernels/vllm_worker.py), for tests/test_vllm_worker.py.

promote starts ``PYTHON -I vllm_worker.py``; a contract whose `python:` is this file (made executable
by the test) runs it instead, with ``-I`` and the worker's path as arguments, which it ignores. The
mode comes from ``FAKE_WORKER_MODE`` (the kernel's `env:`): ``ok`` speaks the protocol honestly on a
16-id vocabulary (uniform logits of 0); every other mode breaks one rule the kernel must catch.
"""

import json
import os
import sys
import time

import numpy as np

MODE = os.environ.get("FAKE_WORKER_MODE", "ok")
VOCAB = 16


def answer(obj) -> None:
    sys.stdout.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    sys.stdout.flush()


def score(message: dict) -> dict:
    prompts, shape = message["prompts"], message["shape"]
    out = np.memmap(message["out"], dtype=np.float32, mode="r+", shape=tuple(shape))
    out[:] = 0.0
    out.flush()
    targets = [[0.0] * (len(p) - 1) for p in prompts]
    if MODE == "lie":  # a row the engine "computed" differs from what lies in the shared file
        targets[0][0] = 1.5
    if MODE == "truncate":
        os.truncate(message["out"], 8)
    rows = [len(p) - 1 for p in prompts]
    if MODE == "rows":
        rows = [r + 1 for r in rows]
    return {"ok": True, "rows": rows, "target": targets, "engine_s": 0.0}


def main() -> int:
    print("fake worker starting", file=sys.stderr, flush=True)
    if MODE == "exit":
        print("engine failed: planted exit", file=sys.stderr, flush=True)
        return 7
    config = json.loads(sys.stdin.readline())
    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") != "0":  # the capture needs the engine core in process
        answer({"ok": False, "error": "VLLM_ENABLE_V1_MULTIPROCESSING is not 0"})
        return 3
    if MODE == "hang":
        time.sleep(600)
    if MODE == "garbage":
        answer("INFO this is not the protocol")
        return 0
    if MODE == "huge":
        answer(json.dumps({"ok": True, "pad": "x" * 200_000}))
        return 0
    if MODE == "refuse":
        answer({"ok": False, "error": f"ValueError: cannot load {config['model']}"})
        return 3
    if MODE == "facts":
        answer({"ok": True, "vocab": "sixteen", "max_model_len": 64})
        return 0
    answer({"ok": True, "vocab": VOCAB, "max_model_len": 64, "vllm": "fake", "torch": "fake", "dtype": "float32"})
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("op") == "close":
            return 0
        if MODE == "die" and len(message["prompts"]) > 1:  # after the probe (one prompt)
            print("engine core died: planted", file=sys.stderr, flush=True)
            os._exit(9)
        answer(score(message))
    return 0


if __name__ == "__main__":
    sys.exit(main())
