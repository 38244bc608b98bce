"""Messages of the command-line tools through :mod:`logging`, on stderr (where progress bars also go).

INFO messages are written as they are; other levels with their level in front (``warning: ...``)."""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (progress bars write there too; tests capture it)."""

    def emit(self, record):
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001  logging must never end the run
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record):
        msg = record.getMessage()
        return msg if record.levelno == logging.INFO else f"{record.levelname.lower()}: {msg}"


def configure_logging(verbose: int = 0, level: str | None = None) -> None:
    """The ``dhydro`` loggers (and the packages') to stderr at ``level`` (default INFO; ``-v``: DEBUG)."""
    lvl = getattr(logging, level) if level else (logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(h)
    h = _StderrHandler()
    h.setFormatter(_Formatter())
    root.addHandler(h)
    root.setLevel(lvl)


__all__ = ["configure_logging"]
