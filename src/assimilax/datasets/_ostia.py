"""Monthly OSTIA sea-surface temperature analyses (the `iris-sample-data` wheel)."""

import importlib
import pathlib

import numpy as np
import xarray as xr


EXTRA = "data"
PACKAGE = "iris_sample_data"
FILE = "ostia_monthly.nc"
LICENCE = (
    "UK Open Government Licence "
    "(http://www.nationalarchives.gov.uk/doc/open-government-licence), as stated "
    "by the iris-sample-data package."
)
ATTRIBUTION = (
    "OSTIA (Operational Sea Surface Temperature and Sea Ice Analysis), Met Office; "
    "British Crown copyright. Monthly means distributed as `ostia_monthly.nc` in "
    "the iris-sample-data package (SciTools, https://github.com/SciTools/"
    "iris-sample-data)."
)
REFERENCE = (
    "Donlon, C. J., et al. (2012). The Operational Sea Surface Temperature and Sea "
    "Ice Analysis (OSTIA) system. Remote Sensing of Environment, 116, 140-158."
)


def _sample_data_path() -> pathlib.Path:
    try:
        package = importlib.import_module(PACKAGE)
    except ImportError as error:
        raise ImportError(
            "The OSTIA sea-surface temperature is read from the `iris-sample-data` "
            f"package, which is not installed: pip install 'assimilax[{EXTRA}]'."
        ) from error
    return pathlib.Path(package.path) / FILE


def ostia_sst() -> xr.Dataset:
    """54 monthly OSTIA sea-surface temperature analyses, 2006-04 to 2010-09.

    An equatorial band (5°S-5°N, 18 latitudes by 432 longitudes at 0.56° by
    0.83°), read from the `iris-sample-data` package (optional extra
    ``assimilax[data]``; UK Open Government Licence, British Crown copyright:
    see the Dataset's `licence` and `attribution` attrs).

    **Returns:** an `xarray.Dataset` with

    - `sst` ``(time, lat, lon)``, float32, kelvin, CF standard name
      ``sea_surface_temperature``; NaN over land (the same 26 % of the points
      every month);
    - `ocean` ``(lat, lon)``, bool, True where `sst` has values;
    - coordinates `time` (mid-month), `lat` (degrees_north), `lon`
      (degrees_east, 0 to 359.2, periodic).

    **Raises:** `ImportError` naming the extra when `iris-sample-data` is missing.
    """
    path = _sample_data_path()
    with xr.open_dataset(path) as raw:
        sst = raw["surface_temperature"].load()
    sst = sst.rename({"latitude": "lat", "longitude": "lon"})
    sst = sst.drop_vars(
        [c for c in sst.coords if c not in ("time", "lat", "lon")], errors="ignore"
    )
    ocean = sst.notnull().all("time")
    sst.attrs = {
        "standard_name": "sea_surface_temperature",
        "long_name": "monthly mean sea surface temperature (OSTIA analysis)",
        "units": "K",
        "cell_methods": "time: mean (monthly)",
    }
    ds = xr.Dataset({"sst": sst, "ocean": ocean})
    ds["ocean"].attrs = {
        "long_name": "ocean points (True where sst has values)",
        "flag_meanings": "land ocean",
    }
    ds["lat"].attrs = {
        "standard_name": "latitude",
        "long_name": "latitude",
        "units": "degrees_north",
        "axis": "Y",
    }
    ds["lon"].attrs = {
        "standard_name": "longitude",
        "long_name": "longitude",
        "units": "degrees_east",
        "axis": "X",
    }
    ds["time"].attrs = {"standard_name": "time", "long_name": "time (mid-month)"}
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": "OSTIA monthly sea-surface temperature, 5S-5N band, 2006-04..2010-09",
        "source": f"{PACKAGE} {_version()} :: {FILE}",
        "institution": "Met Office",
        "licence": LICENCE,
        "attribution": ATTRIBUTION,
        "references": REFERENCE,
    }
    if not bool(np.any(ds["ocean"].values)):
        raise ValueError(f"{path} holds no sea-surface temperature values.")
    return ds


def _version() -> str:
    return getattr(importlib.import_module(PACKAGE), "__version__", "unknown")
