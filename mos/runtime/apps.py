"""Loading the app a run attaches (``--app MODULE`` or ``app:`` in settings)."""

from __future__ import annotations

import importlib
import importlib.util
import os

from mos.errors import MosError

__all__ = ["load_app"]


def load_app(spec: str):
    """The module named by ``spec``: a module name or a ``.py`` file path."""
    if spec.endswith(".py") or os.path.sep in spec:
        if not os.path.exists(spec):
            raise MosError(f"--app: no such file {spec!r}")
        name = os.path.splitext(os.path.basename(spec))[0]
        sp = importlib.util.spec_from_file_location(name, spec)
        mod = importlib.util.module_from_spec(sp)
        sp.loader.exec_module(mod)
        return mod
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise MosError(f"--app: cannot import {spec!r}: {exc}") from None
