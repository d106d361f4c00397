"""DAPPER-style error statistics of a cycled assimilation."""

import numpy as np
import xarray as xr
from jaxtyping import Float

from .._dims import TRUTH


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


def background_error_covariance(
    ds: xr.Dataset,
    *,
    truth: xr.DataArray | None = None,
    burn_in: float | None = None,
) -> Float[np.ndarray, "n n"]:
    """The sample covariance of the background errors of a cycled assimilation.

    Run a training cycle (on a twin experiment, or a period with a reanalysis as
    truth), estimate ``B`` from how wrong its backgrounds were, and cycle again
    with it (`assimilax.priors.CovarianceBackground`): repeated two or three
    times this converges to the static ``B`` that suits the method, a much
    better one than a scaled climatological covariance.

    **Arguments:**

    - `ds`: the output of `cycle`, with its per-window `background` and
      `window_start`.
    - `truth`: the true states on a `time` coordinate that holds the window
      starts (e.g. the `truth` of `twin_experiment`). Default: `ds`'s own
      `truth`, on the analysed times (windows whose start is not one of them are
      skipped).
    - `burn_in`: windows starting at ``t <= t0 + burn_in`` are left out
      (default: the `burn_in` attr of `ds`, else 0).

    **Returns:** the ``(n, n)`` covariance (``n`` the state size, flattened) of
    ``background - truth`` over the windows kept (about their mean).

    **Raises:** `ValueError` when `ds` has no `background`, no truth is given or
    found, or fewer than two windows are kept.
    """
    if "background" not in ds or "window_start" not in ds.coords:
        raise ValueError(
            "background_error_covariance: `ds` has no `background` per window "
            "(give the output of `cycle`)."
        )
    if truth is None:
        if TRUTH not in ds:
            raise ValueError(
                "background_error_covariance: `ds` has no `truth`; pass `truth=`."
            )
        truth = ds[TRUTH]
    burn_in = float(ds.attrs.get("burn_in", 0.0)) if burn_in is None else burn_in
    starts = ds["window_start"].values
    t0 = float(ds.attrs.get("t0", starts[0]))
    interval = float(ds.attrs.get("interval", 1.0))
    available = truth["time"].values
    found = np.isclose(
        starts[:, None], available[None, :], rtol=0.0, atol=1e-6 * interval
    )
    keep = found.any(axis=1) & (starts > t0 + burn_in)
    if keep.sum() < 2:
        raise ValueError(
            f"background_error_covariance: {int(keep.sum())} window(s) after the "
            f"burn-in ({burn_in}) have a truth at their start; need >= 2."
        )
    true_states = truth.values[found[keep].argmax(axis=1)]
    errors = ds["background"].values[keep] - true_states
    return np.cov(errors.reshape(errors.shape[0], -1), rowvar=False)
