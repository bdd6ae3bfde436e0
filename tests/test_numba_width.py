"""The fused kernel's vector width: 512-bit where the CPU has AVX-512, unless the user chose otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

PROBE = """
import json, numba
from numba.core import codegen
host = codegen.get_host_cpu_features()
import promote.metrics._numba_math  # noqa: F401
print(json.dumps({"avx512": "+avx512f" in host.split(","), "features": numba.config.CPU_FEATURES}))
"""


def _probe(**env: str) -> dict:
    child_env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_FEATURES", "PROMOTE_NUMBA_PREFER_256")}
    child_env.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=child_env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_avx512_hosts_get_full_width_vectors_and_others_are_untouched():
    got = _probe()
    if got["avx512"]:
        assert got["features"].endswith(",-prefer-256-bit") and "+avx512f" in got["features"]
    else:
        assert got["features"] is None


def test_the_users_numba_features_and_the_opt_out_are_respected():
    assert _probe(NUMBA_CPU_FEATURES="+avx2")["features"] == "+avx2"
    assert _probe(PROMOTE_NUMBA_PREFER_256="1")["features"] is None


def test_the_kernel_gives_the_same_numbers_at_either_width(tmp_path):
    """Only the vector width changes, not the maths: 256- and 512-bit builds agree to 1e-12 (sums reassociate)."""
    script = tmp_path / "run.py"
    script.write_text(
        "import numpy as np, sys\n"
        "from promote.metrics.distribution import token_metrics\n"
        "rng = np.random.default_rng(3)\n"
        "zr = (rng.normal(size=(16, 1000)) * 4).astype(np.float32)\n"
        "zc = (zr + rng.normal(size=zr.shape) * 0.05).astype(np.float32)\n"
        "got = token_metrics(zr, zc, rng.integers(0, 1000, 16))\n"
        "np.save(sys.argv[1], np.stack([got[k] for k in ('kl', 'kl_rev', 'tv', 'ref_entropy', 'cand_entropy')]))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_FEATURES", "PROMOTE_NUMBA_PREFER_256")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    for name, opt_out in (("full", "0"), ("narrow", "1")):
        subprocess.run([sys.executable, str(script), str(tmp_path / f"{name}.npy")],
                       env={**env, "PROMOTE_NUMBA_PREFER_256": opt_out}, check=True)
    full, narrow = np.load(tmp_path / "full.npy"), np.load(tmp_path / "narrow.npy")
    assert np.isfinite(full).all() and (full[0] > 0).all()
    np.testing.assert_allclose(full, narrow, rtol=1e-12)
