"""Files that are never lost or left half-written: outputs, recordings, restarts, weights and checkpoints.

* A file is written beside its target under a temporary name and moved into place (``os.replace``, atomic on
  one file system) only when it is complete: a run that fails never replaces an existing file.
* A run's output grows in the *partial* file :func:`partial_path` (``out.nc`` → ``out.partial.nc``) and becomes
  ``out.nc`` when the run ends well.  A run that stops early (an error, Ctrl-C, a kill) leaves what it flushed in
  the partial file, whose global attributes say that it is incomplete and up to which time.
* An existing complete output is replaced only when asked (:func:`check_target` with ``overwrite``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: the global attribute a partial output carries, and its value once the run ended well
STATUS_ATTR = "run_status"
COMPLETE = "complete"
OVERWRITE_HINT = "give --overwrite (dhydro run) or 'overwrite: true' in the spec's outputs section to replace it"


def partial_path(path) -> Path:
    """Where the output ``path`` grows while its run goes: ``dir/name.partial.ext``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.partial{p.suffix}")


def check_target(path, overwrite: bool = False, what: str = "output") -> Path:
    """A file path a run may write to: not a folder, its folder creatable, and not an existing file unless
    ``overwrite`` (the file is then replaced only when the new run ends well)."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{what} {p}: is a folder; expected the path of a file to write")
    if p.exists() and not overwrite:
        raise FileExistsError(f"{what} {p} already exists (the complete output of an earlier run); refusing to "
                              f"overwrite it: {OVERWRITE_HINT} (it is replaced only when the new run ends well)")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{what} {p}: cannot create its folder {p.parent} ({exc.strerror or exc})") from exc
    if not os.access(p.parent, os.W_OK):
        raise PermissionError(f"{what} {p}: the folder {p.parent} is not writable")
    return p


def atomic_write(path, write, what: str = "file") -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path`` (same suffix), then move it into place; on any
    failure the temporary file is removed and an existing ``path`` is left as it was."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{what} {p}: is a folder; expected the path of a file to write")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.stem}.", suffix=f".tmp{p.suffix}")
    os.close(fd)
    os.remove(tmp)  # writers (netCDF4, torch) create the file themselves
    try:
        write(tmp)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return p


def atomic_write_text(path, text: str, what: str = "file") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), what)


def save_figure(fig, path, what: str = "plot", **kwargs) -> Path:
    """``fig.savefig(path, **kwargs)`` atomically (the format from ``path``'s suffix): a failure part-way never leaves
    a truncated image in place of an earlier one."""
    fmt = kwargs.pop("format", None) or Path(path).suffix.lstrip(".") or None
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs), what)


__all__ = ["partial_path", "check_target", "atomic_write", "atomic_write_text", "save_figure", "STATUS_ATTR", "COMPLETE", "OVERWRITE_HINT"]
