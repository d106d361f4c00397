"""DAPPER-style error statistics of a cycled assimilation."""

import numpy as np
import xarray as xr

from ._twin import TRUTH


RMSE_A = "rmse.a"
RMSE_F = "rmse.f"


def cycling_statistics(ds: xr.Dataset, *, burn_in: float = 0.0) -> xr.Dataset:
    """Analysis and forecast RMSE per time and their averages after a burn-in.

    **Arguments:**

    - `ds`: a Dataset with `analysis`, `forecast` and `truth` on a `time` dim
      (as returned by `cycle` with a truth); its `t0` attr (default: the first
      time) is where the burn-in starts.
    - `burn_in`: times ``t <= t0 + burn_in`` are left out of the averages.

    **Returns:** a new Dataset with the variables ``rmse.a`` and ``rmse.f``
    (``time``): the root mean square over the state of ``analysis - truth`` and
    ``forecast - truth``; and attrs ``rmse.a``, ``rmse.f`` (their means over the
    times after the burn-in, as DAPPER's ``tavg`` of ``err.rms``), `burn_in` and
    `num_averaged`.

    **Raises:** `ValueError` for a missing variable, a negative burn-in, or a
    burn-in that leaves no time to average.
    """
    missing = [v for v in ("analysis", "forecast", TRUTH) if v not in ds]
    if missing:
        raise ValueError(f"cycling_statistics: `ds` has no variable {missing[0]!r}.")
    if not burn_in >= 0:
        raise ValueError(
            f"cycling_statistics(burn_in=...) must be >= 0, got {burn_in}."
        )
    space = [d for d in ds["analysis"].dims if d != "time"]
    out = ds.copy()
    for name, variable in ((RMSE_A, "analysis"), (RMSE_F, "forecast")):
        error = ds[variable] - ds[TRUTH]
        out[name] = np.sqrt((error**2).mean(space))
        out[name].attrs = {"long_name": f"{variable} root-mean-square error"}
    times = ds["time"].values
    t0 = float(ds.attrs.get("t0", times[0]))
    after = times > t0 + burn_in
    if not after.any():
        raise ValueError(
            f"cycling_statistics(burn_in=...): burn_in={burn_in} leaves no time to "
            f"average (the last time is {float(times[-1])}, t0 is {t0})."
        )
    out.attrs.update(
        {
            RMSE_A: float(out[RMSE_A].values[after].mean()),
            RMSE_F: float(out[RMSE_F].values[after].mean()),
            "burn_in": float(burn_in),
            "num_averaged": int(after.sum()),
        }
    )
    return out
