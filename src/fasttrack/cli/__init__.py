"""The ``fasttrack`` command line: one module per command group, each command a thin layer over :mod:`fasttrack.api`.

A command parses its options, calls one API function and renders the result (:mod:`fasttrack.cli.render`);
:func:`main` turns every failure into one readable line.
"""

from fasttrack.cli.entry import app, main

__all__ = ["app", "main"]
