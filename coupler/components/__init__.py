"""BMI components provided by the coupler (data components and adapters).

:class:`GriddedForcingBmi` streams a gridded CF NetCDF forcing time series as a BMI 2.0 component.
"""
from .gridded_forcing import ConfigError, GriddedForcingBmi, GriddedForcingConfig

__all__ = ["ConfigError", "GriddedForcingBmi", "GriddedForcingConfig"]
