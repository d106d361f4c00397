"""Demo: sea-surface temperature under clouds (``assimilax demo sst``; issue 19).

Real history: the 54 monthly OSTIA analyses of `assimilax.datasets.ostia_sst`
(5S-5N, 2006-04 to 2010-09; optional extra ``assimilax[data]``, UK Open
Government Licence). Anomalies from the training years' monthly climatology are
reconstructed from cloudy observations: spatially correlated clouds
(`observations.cloud_mask`) hide 50 %, 70 % or 90 % of the ocean, and the rest is
observed with 0.2 K noise. Months 2006-04..2009-03 train, 2009-04..2009-09
validate (every choice of rank, weight), 2009-10..2010-09 test (looked at once).

Methods, on the same test observations:

1. climatology (zero anomaly) and persistence (the previous month's field);
2. EOF reconstruction (DINEOF: iterated projection on the training years' EOFs,
   `priors.EOFBasis`; rank chosen on validation);
3. optimal interpolation: 3DVar with a diffusion-correlated background whose std
   and length scale are learnt by `fit` through the argmin (`Implicit`) on the
   training months' cloudy observations;
4. a `ConvDenoiser2D` pretrained on the 36 training fields, used zero-shot as an
   `EnergyPrior` added to the OI cost (weight chosen on validation), each solve
   started from the OI analysis;
5. the same prior fine-tuned end to end through the 3DVar argmin (`fit`,
   `Implicit`) on the training months.

Prints RMSE (K) and the skill score ``1 - RMSE / RMSE(climatology)`` per method
and gap fraction, writes ``sst.nc`` (the reconstructions in K with CF
attributes, and the scores) and ``sst.png`` (one test month at 70 % clouds).
"""

import pathlib
import time

import numpy as np
import xarray as xr

from .._plots import save_figure
from ._data import (
    anomalies as anomalies,
    check_dataset as check_dataset,
    DataConfig as DataConfig,
    observe as observe,
    rmse as rmse,
)
from ._run import Config as Config, METHODS as METHODS, QUICK as QUICK, run as run


NAME = "sst"


def table(results: dict) -> str:
    """RMSE (K), its standard error over months and the skill score, as text."""
    fractions = results["config"].data.fractions
    head = f"{'method':<28}" + "".join(f"{f'clouds {f:.0%}':>22}" for f in fractions)
    lines = [head, f"{'':<28}" + f"{'RMSE ± s.e.  skill':>22}" * len(fractions)]
    for name in METHODS:
        row = f"{name:<28}"
        for f in fractions:
            error = results["rmse"][name, f]
            clim = results["rmse"]["climatology", f].mean()
            se = error.std(ddof=1) / np.sqrt(error.size)
            row += f"{error.mean():>9.3f} ± {se:.3f} {1 - error.mean() / clim:>6.2f}"
        lines.append(row)
    return "\n".join(lines)


def to_dataset(results: dict) -> xr.Dataset:
    """The reconstructions (K, on the band, NaN over land) and the scores."""
    data, cfg = results["data"], results["config"]
    pad = cfg.data.pad
    ds = results["ds"].isel(lon=slice(None, None, cfg.data.lon_stride))
    index = data["blocks"][results["block"]]
    clim = data["climatology"][data["months"][index] - 1]
    fractions = list(cfg.data.fractions)
    rec = np.stack(
        [
            np.stack(
                [results["estimates"][m, f][:, pad:-pad] + clim for f in fractions]
            )
            for m in METHODS
        ]
    )
    obs = np.stack(
        [
            np.asarray(results["windows"][f]["obs"])[:, pad:-pad] + clim
            for f in fractions
        ]
    )
    scores = np.stack(
        [np.stack([results["rmse"][m, f] for f in fractions]) for m in METHODS]
    )
    coords = {
        "method": list(METHODS),
        "clouds": ("clouds", fractions, {"long_name": "clouded share of the ocean"}),
        "time": ds["time"].values[index],
        "lat": ds["lat"],
        "lon": ds["lon"],
    }
    sst_attrs = {
        "standard_name": "sea_surface_temperature",
        "units": "K",
        "long_name": "reconstructed monthly sea surface temperature",
    }
    return xr.Dataset(
        {
            "reconstruction": (
                ("method", "clouds", "time", "lat", "lon"),
                rec.astype(np.float32),
                sst_attrs,
            ),
            "observations": (
                ("clouds", "time", "lat", "lon"),
                obs.astype(np.float32),
                {**sst_attrs, "long_name": "observed SST (NaN under clouds)"},
            ),
            "truth": (
                ("time", "lat", "lon"),
                ds["sst"].values[index],
                {**sst_attrs, "long_name": "OSTIA analysis (truth)"},
            ),
            "rmse": (
                ("method", "clouds", "time"),
                scores,
                {"units": "K", "long_name": "RMSE over the ocean"},
            ),
        },
        coords=coords,
        attrs={
            "Conventions": "CF-1.8",
            "title": "SST reconstruction under clouds (assimilax demo sst)",
            "block": results["block"],
            "observation_noise_std_K": cfg.data.noise_std,
            "oi_std_K": results["oi"]["log_std"],
            "oi_length_grid_points": results["oi"]["log_length"],
            "zero_shot_weight": results["zero_shot_weight"],
            "fine_tuned_weight": results["fine_tuned_weight"],
            "licence": results["ds"].attrs["licence"],
            "attribution": results["ds"].attrs["attribution"],
            "source": results["ds"].attrs["source"],
        },
    )


def main(
    out: str | pathlib.Path = "assimilax-output", quick: bool = False, seed: int = 0
) -> dict:
    """Run every method on the test months, print the table, save ``sst.nc`` and
    ``sst.png``. Returns a dict: mean test RMSE per method and gap fraction, the
    seconds taken."""
    start = time.perf_counter()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = run(QUICK if quick else Config(), seed)
    print(table(results))
    print(
        f"solves not converged: {results['failures']}; ranks {results['ranks']}; "
        f"prior weight {results['zero_shot_weight']:g} (zero-shot) -> "
        f"{results['fine_tuned_weight']:.3g} (fine-tuned)"
    )
    ds = to_dataset(results)
    ds.to_netcdf(out / f"{NAME}.nc")
    save_figure(_plot, ds, out / f"{NAME}.png", figsize=(9.0, 12.0))
    numbers = {
        (m, f): float(results["rmse"][m, f].mean())
        for m in METHODS
        for f in results["config"].data.fractions
    }
    numbers["seconds"] = time.perf_counter() - start
    return numbers


def _plot(ds: xr.Dataset, figure) -> None:
    clouds = ds["clouds"].values[len(ds["clouds"]) // 2]
    month = ds.isel(time=0)
    truth = month["truth"]
    low, high = float(truth.min()), float(truth.max())
    rows = [
        ("truth", truth),
        (f"observed ({clouds:.0%} clouds)", month["observations"].sel(clouds=clouds)),
    ] + [
        # `isel`: `Dataset.sel(method=...)` is sel's own keyword.
        (str(m), month["reconstruction"].isel(method=i).sel(clouds=clouds))
        for i, m in enumerate(ds["method"].values)
    ]
    axes = figure.subplots(len(rows), 2, squeeze=False)
    for (title, field), (left, right) in zip(rows, axes):
        left.imshow(
            field.values,
            origin="lower",
            vmin=low,
            vmax=high,
            cmap="magma",
            aspect="auto",
        )
        left.set_title(title, fontsize=7)
        error = field - truth
        right.imshow(
            error.values,
            origin="lower",
            vmin=-1.0,
            vmax=1.0,
            cmap="RdBu_r",
            aspect="auto",
        )
        right.set_title("error (K)" if title != "truth" else "", fontsize=7)
        if title == "truth":
            right.set_visible(False)
        for a in (left, right):
            a.set_xticks([])
            a.set_yticks([])
