"""Digest of the source code behind a cached value, so a code change misses the cache instead of reusing it.

Read through the import system (`inspect.getsource`), not file paths: it works when `etl` runs from a zip
(`--py-files etl.zip` on a cluster).
"""

from __future__ import annotations

import hashlib
import inspect


def source_digest(*objects, length: int = 16) -> str:
    """Hex digest (first `length` chars) of the source of modules, classes or functions, in the given order."""
    source = "".join(inspect.getsource(o) for o in objects)
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:length]
