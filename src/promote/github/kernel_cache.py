"""The GitHub Action's cache of promote's compiled metric kernels (numba's on-disk cache) across runs.

Why: the action installs promote into a fresh virtual environment on every run, so numba compiles the
fused metric kernel again for every signature a check meets (~10 s each on a 2-core runner; the embedded
example's check takes ~29 s on a fresh machine and ~8 s once compiled, docs/performance.md). numba keeps
that cache beside the source, in ``promote/metrics/__pycache__`` of the installed package; the action
saves and restores that one folder with ``actions/cache`` under the key computed here. Only promote's
kernels are kept: numba code of the user's own (a model file's) keeps numba's default place and is
compiled fresh as before.

What the key must cover, because a restored entry is machine code that numba loads without asking:

* every source file of the installed package, by content: numba checks the hash of the file a cached
  function lives in, but not of the modules it calls (``_fused.py`` inlines ``_numba_math.py``);
* numba's, llvmlite's and Python's versions, the OS and architecture, and the CPU (name and feature
  string): numba would skip entries for another CPU, but an immutable cache entry saved on one CPU type
  would then miss forever on another;
* where promote is installed: numba files its index under the source's path.

The key is a digest, so nothing from the environment reaches a log line or a cache name as text.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

KEY_PREFIX = "promote-kernels-v1"


def package_digest(package_dir: Path) -> str:
    """sha256 over every ``.py`` file under ``package_dir``: relative path and content, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _toolchain() -> list[str]:
    """numba, llvmlite and Python versions, the platform, and the host CPU as LLVM (and so numba) sees it."""
    import llvmlite
    import numba
    from llvmlite import binding

    return [f"numba {numba.__version__}", f"llvmlite {llvmlite.__version__}", f"python {sys.version}",
            f"{sys.platform} {platform.machine()}", f"cpu {binding.get_host_cpu_name()}",
            f"features {binding.get_host_cpu_features().flatten()}"]


def cache_key(package_dir: Path, env: Mapping[str, str]) -> str:
    """The actions/cache key for the compiled kernels of the promote installed at ``package_dir``."""
    digest = hashlib.sha256()
    parts = [package_digest(package_dir), str(package_dir.resolve()), *_toolchain(),
             f"prefer-256 {env.get('PROMOTE_NUMBA_PREFER_256', '')}"]
    for part in parts:
        digest.update(part.encode() + b"\0")
    return f"{KEY_PREFIX}-{sys.platform}-{platform.machine()}-{digest.hexdigest()[:32]}"


def kernel_folder(package_dir: Path) -> Path:
    """Where numba caches promote's metric kernels: ``__pycache__`` beside ``metrics/_fused.py``."""
    return package_dir / "metrics" / "__pycache__"


def main() -> int:
    """Print ``key=`` and ``path=`` lines for ``$GITHUB_OUTPUT`` (the action's cache step)."""
    import promote

    package_dir = Path(promote.__file__).parent
    print(f"key={cache_key(package_dir, os.environ)}")
    print(f"path={kernel_folder(package_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
