"""A planted serving config fault: a copy of ``model/`` whose config.json has a wrong ``rope_theta``.

Same weights, same tokenizer, one configuration number wrong — the kind of mistake a deployment
makes when it copies a config from a neighbouring model. vLLM serves it without complaint; stage 1
of tiny_llama's contracts must block it through HTTP.

Run: python examples/tiny_llama/faults.py OUT_DIR   (writes OUT_DIR with rope_theta 10000 → 500)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRONG_ROPE_THETA = 500.0


def wrong_rope(out: Path) -> Path:
    """Copy the model directory to ``out`` with ``rope_theta`` replaced by WRONG_ROPE_THETA."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(HERE / "model", out)
    config_file = out / "config.json"
    config = json.loads(config_file.read_text())
    if "rope_parameters" in config:
        config["rope_parameters"]["rope_theta"] = WRONG_ROPE_THETA
    config["rope_theta"] = WRONG_ROPE_THETA  # older transformers read the top-level key
    config_file.write_text(json.dumps(config, indent=2))
    return out


if __name__ == "__main__":
    print(wrong_rope(Path(sys.argv[1])))
