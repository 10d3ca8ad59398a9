"""Middleboxes built on mos; each subpackage is an app for ``mos run --app``.

An app module defines ``attach(engine)``, which registers its monitors, and
may define ``finish(engine, stats)``, called once after the run with its
RunStats.
"""
