"""One metadata table and one time convention for every NetCDF time series the project writes (CF-1.8).

The time convention, the same in the default job's output, the coupler's outputs (serial and MPI), the recording
and ``dhydro regrid apply`` (when its input carries time bounds):

* ``time`` is the **end** of the interval a value describes; ``time_bnds`` holds ``[start, end]`` of that interval;
* ``cell_methods`` says what a value is over its interval: ``time: mean`` for fluxes and rates, ``time: sum`` for
  depths accumulated over the interval, ``time: point`` for stores (the value at the end of the interval).

So a daily runoff of the day 2005-10-01 is stamped 2005-10-02 00:00 with bounds [2005-10-01, 2005-10-02] in every
file.  Series are selected by their id: ``unit_id`` is the dimension coordinate (``cf_role: timeseries_id``), so
``xr.open_dataset(path).streamflow.sel(unit_id="01022500")`` works.

Variable names are valid CF names (letters, digits and underscores, starting with a letter); a CSDMS name that is
not (``snowpack__liquid-equivalent_depth``) is written as :func:`cf_name` of it and kept in the ``csdms_name``
attribute.  A ``standard_name`` is written only with units it admits (:func:`variable_attrs`).
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone

CONVENTIONS = "CF-1.8"
TIME_LONG_NAME = "end of the interval each value describes (interval in time_bnds)"
TIME_COMMENT = ("time convention: each value is stamped with the end of its interval; time_bnds holds [start, end]; "
                "cell_methods says whether a value is the mean over the interval (fluxes), the sum over it (depths) "
                "or its value at the end (stores)")

_MEAN, _SUM, _POINT = "mean", "sum", "point"
_RATE_UNITS = ("s-1", "d-1", "h-1", "day-1", "W m-2")

#: standard name -> the unit strings written with it (units it admits; anything else drops the standard name)
STANDARD_UNITS = {
    "water_volume_transport_in_river_channel": ("m3 s-1",),
    "lwe_precipitation_rate": ("m s-1", "mm s-1", "mm d-1", "mm h-1"),
    "lwe_thickness_of_surface_snow_amount": ("m", "mm"),
    "air_temperature": ("K", "degC", "degrees_C"),
    "surface_downwelling_shortwave_flux_in_air": ("W m-2",),
    "surface_air_pressure": ("Pa",),
    "specific_humidity": ("kg kg-1", "1"),
    "precipitation_flux": ("kg m-2 s-1",),
    "precipitation_amount": ("kg m-2",),
    "lwe_thickness_of_precipitation_amount": ("m", "mm"),
    "surface_downwelling_longwave_flux_in_air": ("W m-2",),
    "eastward_wind": ("m s-1",),
    "northward_wind": ("m s-1",),
    "latitude": ("degrees_north",),
    "longitude": ("degrees_east",),
}

#: variable name (CSDMS or the default job's short name) -> (long_name, kind, standard_name or None)
META = {
    # BmiDeltaModel outputs
    "land_surface_water__runoff_depth": ("routed runoff depth accumulated over the interval", _SUM, None),
    "land_surface_water__runoff_volume_flux": ("routed runoff volume flux at the unit outlet", _MEAN,
                                               "water_volume_transport_in_river_channel"),
    "land_surface_water__evapotranspiration_volume_flux": ("actual evapotranspiration rate", _MEAN, None),
    "hbv__potential_evapotranspiration_volume_flux": ("potential evapotranspiration rate", _MEAN, None),
    "snowpack__liquid-equivalent_depth": ("snow water equivalent (snowpack + liquid water in snow)", _POINT,
                                          "lwe_thickness_of_surface_snow_amount"),
    "hbv__snowpack_storage": ("HBV frozen snowpack store", _POINT, None),
    "hbv__meltwater_storage": ("HBV liquid water held in the snowpack", _POINT, None),
    "hbv__soil_moisture_storage": ("HBV soil moisture store", _POINT, None),
    "hbv__upper_zone_storage": ("HBV upper groundwater store", _POINT, None),
    "hbv__lower_zone_storage": ("HBV lower groundwater store", _POINT, None),
    # forcing components' outputs (values held over the interval)
    "atmosphere_water__liquid_equivalent_precipitation_rate": ("precipitation rate", _MEAN, "lwe_precipitation_rate"),
    "land_surface_air__temperature": ("near-surface air temperature", _MEAN, "air_temperature"),
    "land_surface_air__max_of_temperature": ("maximum near-surface air temperature", _MEAN, None),
    "land_surface_air__min_of_temperature": ("minimum near-surface air temperature", _MEAN, None),
    "land_surface_radiation~incoming~shortwave__energy_flux": ("incoming shortwave radiation", _MEAN,
                                                               "surface_downwelling_shortwave_flux_in_air"),
    "land_surface_air__pressure": ("surface air pressure", _MEAN, "surface_air_pressure"),
    "atmosphere_air_water~vapor__relative_saturation": ("near-surface specific humidity", _MEAN, "specific_humidity"),
    "land_surface_water__potential_evaporation_volume_flux": ("potential evapotranspiration rate (input)", _MEAN, None),
    # the default job (dhydro_run.nc)
    "streamflow": ("routed streamflow at the unit outlet", _MEAN, "water_volume_transport_in_river_channel"),
    "runoff": ("routed runoff depth rate", _MEAN, None),
    "runoff_unrouted": ("runoff depth rate before routing", _MEAN, None),
    "et": ("actual evapotranspiration rate", _MEAN, None),
    "pet": ("potential evapotranspiration rate", _MEAN, None),
    "precip": ("precipitation rate", _MEAN, "lwe_precipitation_rate"),
    "leak": ("water added by the soil-moisture floor", _MEAN, None),
    "swe": ("snow water equivalent (snowpack + liquid water in snow)", _POINT, "lwe_thickness_of_surface_snow_amount"),
    "snowpack": ("frozen snowpack store", _POINT, None),
    "meltwater": ("liquid water held in the snowpack", _POINT, None),
    "soil_moisture": ("soil moisture store", _POINT, None),
    "upper_zone_storage": ("upper groundwater store", _POINT, None),
    "lower_zone_storage": ("lower groundwater store", _POINT, None),
    "routing_storage": ("water in flight in the unit hydrograph", _POINT, None),
    "total_storage": ("all stores including routing", _POINT, None),
    "qobs": ("observed streamflow (USGS) as a runoff depth rate", _MEAN, None),
}

_INVALID = re.compile(r"[^A-Za-z0-9_]")


def cf_name(name: str) -> str:
    """A valid CF variable name for ``name``: letters, digits and underscores, starting with a letter."""
    n = _INVALID.sub("_", str(name))
    return n if n[:1].isalpha() else f"v_{n}"


def kind_of(name: str, units: str) -> str:
    """``mean``, ``sum`` or ``point``: from the table, else a rate unit means a mean and anything else a point."""
    if name in META:
        return META[name][1]
    return _MEAN if any(units.strip().endswith(r) or f"{r} " in units for r in _RATE_UNITS) else _POINT


def variable_attrs(name: str, units: str, long_name: str | None = None, kind: str | None = None) -> dict:
    """CF attributes of a time-series variable named ``name`` (its original, possibly CSDMS, name) in ``units``:
    ``units``, ``long_name``, ``cell_methods``, ``standard_name`` (only where the units fit it) and ``csdms_name``
    where ``name`` is not a valid CF name."""
    ln, _, std = META.get(name, (None, None, None))
    attrs = {"units": units, "long_name": long_name or ln or name.replace("__", " ").replace("_", " "),
             "cell_methods": f"time: {kind or kind_of(name, units)}"}
    if std and standard_name_fits(std, units):
        attrs["standard_name"] = std
    if cf_name(name) != name:
        attrs["csdms_name"] = name
    return attrs


def standard_name_fits(std: str, units: str) -> bool | None:
    """Whether ``units`` fit the standard name ``std`` (:data:`STANDARD_UNITS`); None when the table does not
    know ``std``."""
    if std in STANDARD_UNITS:
        return units in STANDARD_UNITS[std]
    return None


def time_attrs(calendar: str | None = "standard") -> dict:
    """Attributes of ``time`` (stamp = end of the interval, bounds ``time_bnds``); ``calendar=None`` leaves the
    calendar to the encoder (xarray)."""
    attrs = {"standard_name": "time", "long_name": TIME_LONG_NAME, "axis": "T", "bounds": "time_bnds"}
    if calendar:
        attrs["calendar"] = calendar
    return attrs


def history_line(what: str | None = None) -> str:
    """A ``history`` entry: when and by what command line the file was made."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    cmd = what or " ".join([sys.argv[0].rsplit("/", 1)[-1], *sys.argv[1:]]) or "bmi-dhydro"
    return f"{stamp}: {cmd} (bmi-dhydro)"


def select(ds, name: str):
    """The variable of an output file written for the (CSDMS) variable ``name``."""
    return ds[cf_name(name)]


__all__ = ["CONVENTIONS", "TIME_COMMENT", "META", "STANDARD_UNITS", "cf_name", "kind_of", "variable_attrs",
           "time_attrs", "history_line", "select"]
