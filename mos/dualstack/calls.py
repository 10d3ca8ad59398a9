"""Checking what user code can be called with, once, when it is handed over.

The dispatcher calls handlers and filters as ``fn(flow, side, event)`` and
timer callbacks as ``fn(flow)`` (or ``fn(engine)``); a callable that cannot
take those arguments is refused when it is registered, by name, instead of
failing at its first event deep inside a run.
"""

from __future__ import annotations

from mos.errors import RegistrationError

__all__ = ["check_call", "qualname"]


def qualname(fn) -> str:
    """module.Qualified.name of a callable (its function, for a bound method)."""
    f = getattr(fn, "__func__", fn)
    name = getattr(f, "__qualname__", None) or getattr(type(f), "__qualname__", repr(f))
    mod = getattr(f, "__module__", None) or getattr(type(f), "__module__", None)
    return f"{mod}.{name}" if mod and mod != "builtins" else name


def check_call(fn, params: tuple, what: str) -> None:
    """RegistrationError unless ``fn`` accepts ``len(params)`` positional
    arguments (named ``params`` in the message).  Callables whose signature
    cannot be read (some builtins) are taken on trust."""
    import inspect  # here: registration time only, not at import

    if not callable(fn):
        raise RegistrationError(f"{what}: {fn!r} is not callable")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*params)
    except TypeError as exc:
        raise RegistrationError(
            f"{what}: {qualname(fn)}{sig} must accept ({', '.join(params)}): {exc}") from None
