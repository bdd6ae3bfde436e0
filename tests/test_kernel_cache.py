"""The GitHub Action's compiled-kernel cache key (promote/github/kernel_cache.py) and the guard that keeps numba's
own cache honest across promote's two kernel modules (issue 22)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import promote
from promote.github import kernel_cache
from promote.metrics import _fused

PACKAGE = Path(promote.__file__).parent


def test_key_changes_with_any_source_file_and_with_the_install_path(tmp_path):
    here, there = tmp_path / "a" / "promote", tmp_path / "b" / "promote"
    shutil.copytree(PACKAGE, here, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PACKAGE, there, ignore=shutil.ignore_patterns("__pycache__"))
    key = kernel_cache.cache_key(here, {})
    assert re.fullmatch(r"promote-kernels-v1-[a-z0-9]+-\w+-[0-9a-f]{32}", key)
    assert kernel_cache.cache_key(here, {}) == key  # deterministic
    assert kernel_cache.package_digest(here) == kernel_cache.package_digest(there)
    assert kernel_cache.cache_key(there, {}) != key  # numba files its cache under the source path
    helper = here / "metrics" / "_numba_math.py"  # a callee only: numba's own cache would not notice
    helper.write_text(helper.read_text() + "\n# changed\n")
    assert kernel_cache.cache_key(here, {}) != key
    assert kernel_cache.cache_key(there, {"PROMOTE_NUMBA_PREFER_256": "1"}) != kernel_cache.cache_key(there, {})


def test_main_prints_the_key_and_the_folder_numba_caches_promotes_kernels_in(capsys):
    assert kernel_cache.main() == 0
    out = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert set(out) == {"key", "path"} and out["key"].startswith("promote-kernels-v1-")
    assert Path(out["path"]) == Path(_fused.__file__).parent / "__pycache__"  # numba's in-tree place for _fused


# The files _fused.py compiles in from other modules, in the order HELPERS_SHA256 hashes them.
HELPER_FILES = ("_numba_math.py", "_row_scans.py")


def test_fused_kernel_names_the_helpers_it_was_written_against():
    """numba re-compiles a cached function when *its* file changes, not when a function it inlines from
    another file does (numba 0.68: _fused.py's kernels would keep the old _numba_math.py code, silently).
    _fused.py therefore carries the hash of the files it compiles in (_numba_math.py, then _row_scans.py):
    changing them means changing this line too, and that change is what makes numba drop the stale kernels."""
    here = Path(_fused.__file__).parent
    digest = hashlib.sha256(b"".join((here / name).read_bytes() for name in HELPER_FILES)).hexdigest()
    assert digest == _fused.HELPERS_SHA256, (
        f"metrics/{' or '.join(HELPER_FILES)} changed: set HELPERS_SHA256 in metrics/_fused.py to {digest!r}")

