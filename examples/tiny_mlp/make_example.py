"""Write the example's weights and eval set, deterministically (seeded; no training, no downloads).

Run from the repository root: ``python examples/tiny_mlp/make_example.py``. The outputs are shipped
(weights.safetensors ≈ 8 KB, eval.jsonl ≈ 10 KB), so this only needs re-running after a change here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import TwoHeadMLP  # noqa: E402

SAMPLES = 64


def main() -> None:
    torch.manual_seed(0)
    model = TwoHeadMLP()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(HERE / "weights.safetensors"))
    g = torch.Generator().manual_seed(1)
    lines = []
    for i in range(SAMPLES):
        group = ("near", "far")[i % 2]
        x = torch.randn(16, generator=g) * (1.0 if group == "near" else 3.0)
        lines.append(json.dumps({"id": f"x{i:03d}", "inputs": {"x": [round(v, 4) for v in x.tolist()]},
                                 "tags": {"group": group}}))
    (HERE / "eval.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {HERE / 'weights.safetensors'} and {HERE / 'eval.jsonl'} ({SAMPLES} samples)")


if __name__ == "__main__":
    main()
