"""Atheris harness for the YAML settings parser (mos/settings.py, engine
options of mos.Config through its ``monitor`` section).

Invariant: any bytes, given as text to ``parse_settings`` or as a file to
``load_settings``, either load or raise ``mos.errors.ConfigError`` (whose
message starts with the file name); any other exception is a bug and
atheris stops with it and writes the reproducer.

The first input byte picks the path: bit 0 a file (load_settings, which
checks UTF-8 itself), else text decoded with errors 'replace' or (bit 1)
'surrogateescape' (lone surrogates reach the YAML reader).

    .venv/bin/python fuzz/fuzz_settings.py [libFuzzer flags] [corpus dirs or a file]
"""

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["mos.settings", "mos.config", "mos.dualstack.config",
                                         "yaml"]):
    import yaml  # noqa: F401  (instrumented: its pure-Python SafeLoader does the parsing)
    from mos.settings import load_settings, parse_settings

from mos.errors import ConfigError

_DIR = tempfile.mkdtemp(prefix="mos-fuzz-settings-")
_PATH = os.path.join(_DIR, "mos.yaml")
_INJECT = os.environ.get("MOS_FUZZ_INJECT") == "settings"


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    how, body = data[0], data[1:]
    try:
        if how & 1:
            with open(_PATH, "wb") as fh:
                fh.write(body)
            name = _PATH
            s = load_settings(_PATH)
        else:
            name = "fuzz.yaml"
            text = body.decode("utf-8", "surrogateescape" if how & 2 else "replace")
            s = parse_settings(text, name=name, base_dir=_DIR)
    except ConfigError as exc:
        if not str(exc).startswith(name):
            raise AssertionError(f"ConfigError names no file: {exc}") from None
        return
    # loaded: the result is usable as the runtime uses it
    assert s.ports, "settings without ports loaded"
    s.port(s.ports[0].name)
    if _INJECT:
        raise RuntimeError("MOS_FUZZ_INJECT=settings: injected crash")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
