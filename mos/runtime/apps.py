"""Loading the app a run attaches (``--app MODULE`` or ``app:`` in settings)."""

from __future__ import annotations

import importlib
import importlib.util
import os

from mos.errors import MosError

__all__ = ["load_app"]


def load_app(spec: str, settings=None):
    """The module named by ``spec``: a module name or a ``.py`` file path.
    When ``spec`` is the ``app:`` of ``settings`` (not a ``--app`` given on
    the command line), an error names the settings file, line and key."""
    def fail(why: str) -> MosError:
        if settings is not None and spec == settings.app:
            return settings.error("app", why)
        return MosError(f"--app: {why}")

    if spec.endswith(".py") or os.path.sep in spec:
        if not os.path.exists(spec):
            raise fail(f"no such file {spec!r}")
        name = os.path.splitext(os.path.basename(spec))[0]
        sp = importlib.util.spec_from_file_location(name, spec)
        mod = importlib.util.module_from_spec(sp)
        sp.loader.exec_module(mod)
        return mod
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise fail(f"cannot import {spec!r}: {exc}") from None
