"""Loops compiled with numba (a dependency of librosa), shared by the modules that run them.

A module keeps its loops as plain Python functions (tests and readers see the definition) and runs
``compiled(loop)(...)``: the loop compiled once per process, cached on disk when a cache folder is
writable. Loops do integer work, comparisons, or floating-point work in the order the numpy/scipy code
they replace does it (no fast-math), so compiled they give exactly what that code gave. Nothing is
compiled or imported at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_COMPILED: dict[tuple[str, str], Any] = {}
"""Loops compiled in this process, by (module, name)."""


def compiled(loop: Callable[..., Any]) -> Any:
    """``loop`` compiled by numba (``njit``, no GIL held), once per process; from numba's on-disk cache
    when one is writable, else compiled in memory."""
    key = (loop.__module__, loop.__qualname__)
    if key not in _COMPILED:
        import numba

        try:
            _COMPILED[key] = numba.njit(cache=True, nogil=True)(loop)
        except RuntimeError:  # no writable cache folder: compile in memory
            _COMPILED[key] = numba.njit(nogil=True)(loop)
    return _COMPILED[key]
