"""Optional dependencies ("extras") and the one message that names the extra a feature needs.

The core install (``pip install bmi-dhydro``: what ngen's Python needs to run :class:`bmi_dhydro.BmiDeltaModel`)
leaves out the geospatial readers and plotting:

* ``geo``  -- shapely, pyproj, pyogrio, pyarrow: hydrofabrics (GeoPackage, GeoJSON, GeoParquet), regridding
  (:mod:`coupler.regrid`, ``dhydro regrid``, gridded forcing), ngen configs and partitions from a hydrofabric;
* ``plot`` -- matplotlib: the PNGs written next to runs, trainings and evaluations.

Every import of those packages goes through :func:`require` (or :func:`optional_pyplot` for a plot that is a side
product), so a missing one ends in one message naming the feature and the extra to install.
"""

from __future__ import annotations

import importlib
import logging

#: the extras of pyproject.toml and the packages they bring (``all`` and ``dev`` include both)
EXTRAS = {"geo": ("shapely", "pyproj", "pyogrio", "pyarrow"), "plot": ("matplotlib",)}

log = logging.getLogger("dhydro.extras")
_warned: set[str] = set()


class MissingExtraError(ImportError):
    """A feature needs a package of an extra that is not installed (the message says which extra to install)."""


def require(module: str, extra: str, feature: str):
    """Import ``module`` (dotted names allowed: ``"pyarrow.parquet"``) for ``feature``, or raise
    :class:`MissingExtraError`: "FEATURE needs PKG, which is in the 'EXTRA' extra: pip install 'bmi-dhydro[EXTRA]'".
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").partition(".")[0] == top:
            msg = f"{feature} needs {top}, which is in the '{extra}' extra: pip install 'bmi-dhydro[{extra}]'"
        else:  # installed but broken (e.g. built for another numpy): say so rather than "not installed"
            msg = (f"{feature} needs {top} (in the '{extra}' extra), which is installed but failed to import: "
                   f"{type(exc).__name__}: {exc}")
        raise MissingExtraError(msg, name=top) from exc


def pyplot(feature: str):
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or :class:`MissingExtraError` naming ``plot``."""
    mpl = require("matplotlib", "plot", feature)
    mpl.use("Agg")
    return require("matplotlib.pyplot", "plot", feature)


def optional_pyplot(feature: str):
    """``matplotlib.pyplot`` for a plot that is a side product of a run, or ``None`` without matplotlib: then one
    warning (per feature and process) names the ``plot`` extra and the caller skips the plot; the run goes on."""
    try:
        return pyplot(feature)
    except MissingExtraError as exc:
        if feature not in _warned:
            _warned.add(feature)
            log.warning(f"{exc}; not written")
        return None


__all__ = ["EXTRAS", "MissingExtraError", "optional_pyplot", "pyplot", "require"]
