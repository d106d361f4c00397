"""The OSTIA band as anomalies on a padded grid, split in time, with cloudy
observations."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ...observations import cloud_mask


# The time blocks of issue 19: training, validation, test (never used to train,
# tune or select). Inclusive month bounds.
BLOCKS = {
    "train": ("2006-04", "2009-03"),
    "valid": ("2009-04", "2009-09"),
    "test": ("2009-10", "2010-09"),
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the observations look like.

    - `fractions`: the clouded shares of the ocean points (one experiment each).
    - `noise_std`: the observation noise (K).
    - `cloud_length`: correlation length of the clouds, in grid points.
    - `pad`: rows of unobserved points added north and south of the 18-row band,
      so that the periodic grid of the diffusion background does not join 5S to
      5N (the longitude really is periodic).
    - `lon_stride`: keep every `lon_stride`-th longitude (1: all 432).
    """

    fractions: tuple[float, ...] = (0.5, 0.7, 0.9)
    noise_std: float = 0.2
    cloud_length: float = 6.0
    pad: int = 7
    lon_stride: int = 1


def check_dataset(ds: xr.Dataset) -> None:
    """The experiment needs `sst` over ``(time, lat, lon)`` and an `ocean` mask.

    **Raises:** `ValueError` naming the missing variable or coordinate.
    """
    for name in ("lat", "lon", "time"):
        if name not in ds.coords:
            raise ValueError(
                f"The SST Dataset has no `{name}` coordinate (got coordinates "
                f"{sorted(map(str, ds.coords))}); use `assimilax.datasets.ostia_sst()` "
                "or rename yours to lat/lon/time."
            )
    if "sst" not in ds.data_vars:
        raise ValueError(
            "The SST Dataset has no `sst` variable (got "
            f"{sorted(map(str, ds.data_vars))})."
        )
    if ds["sst"].dims != ("time", "lat", "lon"):
        raise ValueError(
            f"`sst` must have dims (time, lat, lon), got {ds['sst'].dims}."
        )


def block_of(ds: xr.Dataset, block: str) -> np.ndarray:
    """Indices of the months of `block` (``"train"``, ``"valid"``, ``"test"``)."""
    start, end = BLOCKS[block]
    months = ds["time"].dt.strftime("%Y-%m").values
    return np.flatnonzero((months >= start) & (months <= end))


def anomalies(ds: xr.Dataset, cfg: DataConfig) -> dict:
    """The SST anomalies from the training years' monthly climatology, on the
    padded grid.

    **Returns:** a dict with `anomaly` ``(time, ny, nx)`` (0 on land and pad),
    `ocean` ``(ny, nx)`` booleans (False on the pad), `climatology` ``(12,
    ny, nx)`` (K), `months` ``(time,)`` (1-12), `lat`, `lon` (of the unpadded
    band) and `blocks` (indices per block).
    """
    check_dataset(ds)
    ds = ds.isel(lon=slice(None, None, cfg.lon_stride))
    sst = ds["sst"].values.astype(np.float64)
    ocean = np.all(np.isfinite(sst), axis=0)
    months = ds["time"].dt.month.values
    blocks = {name: block_of(ds, name) for name in BLOCKS}
    train = blocks["train"]
    climatology = np.zeros((12, *ocean.shape))
    for m in range(1, 13):
        chosen = train[months[train] == m]
        climatology[m - 1] = sst[chosen].mean(axis=0)
    anomaly = np.where(ocean, sst - climatology[months - 1], 0.0)
    pad = ((0, 0), (cfg.pad, cfg.pad), (0, 0))
    return {
        "anomaly": np.pad(anomaly, pad),
        "ocean": np.pad(ocean, pad[1:]),
        "climatology": np.where(ocean, climatology, np.nan),
        "months": months,
        "lat": ds["lat"].values,
        "lon": ds["lon"].values,
        "blocks": blocks,
    }


def observe(data: dict, block: str, fraction: float, cfg: DataConfig, key) -> dict:
    """Cloudy, noisy observations of every month of `block`.

    **Returns:** windows ``{"truth", "obs", "previous"}``, each ``(w, ny, nx)``:
    the anomaly, its observation (NaN under clouds and off the ocean) and the
    previous month's anomaly (persistence).
    """
    index = data["blocks"][block]
    ocean = data["ocean"]
    rows = slice(cfg.pad, ocean.shape[0] - cfg.pad)
    band = ocean[rows]
    keys = jax.random.split(key, (len(index), 2))
    truth = data["anomaly"][index]
    obs = np.full(truth.shape, np.nan)
    for i, (cloud_key, noise_key) in enumerate(keys):
        clouds = np.asarray(
            cloud_mask(
                cloud_key,
                band.shape,
                fraction,
                cfg.cloud_length,
                valid=band,
            )
        )
        seen = np.zeros_like(ocean)
        seen[rows] = band & ~clouds
        noise = cfg.noise_std * np.asarray(jax.random.normal(noise_key, ocean.shape))
        obs[i] = np.where(seen, truth[i] + noise, np.nan)
    previous = data["anomaly"][np.maximum(index - 1, 0)]
    return {
        "truth": jnp.asarray(truth),
        "obs": jnp.asarray(obs),
        "previous": jnp.asarray(previous),
    }


def check_windows(windows: dict, block: str) -> None:
    """Every window must observe something. **Raises:** `ValueError` naming the
    window of `block` whose `obs` are all NaN."""
    seen = np.isfinite(np.asarray(windows["obs"])).reshape(len(windows["obs"]), -1)
    empty = np.flatnonzero(~seen.any(axis=1))
    if empty.size:
        raise ValueError(
            f"Window {int(empty[0])} of the {block} block has all-NaN `obs`: nothing "
            "is observed there, so no method can reconstruct it (lower the cloud "
            "fraction, or drop the window)."
        )


def rmse(estimates, windows, ocean) -> np.ndarray:
    """RMSE (K) over the ocean of each window's estimate, ``(w,)``."""
    error = (np.asarray(estimates) - np.asarray(windows["truth"]))[:, ocean]
    return np.sqrt(np.mean(error**2, axis=1))
