"""The per-dynamics examples run (quick settings), save their outputs, and improve
on the background; and the plotting functions check their input."""

import numpy as np
import pytest
import xarray as xr

from scripts import load_example


pytest.importorskip("matplotlib")

from assimilax.plotting import hovmoller, snapshot, timeseries  # noqa: E402


NAMES = (
    "heat1d_4dvar",
    "heat2d_4dvar",
    "advection_diffusion_4dvar",
    "lorenz63_4dvar",
    "lorenz96_4dvar",
)


# Five examples end to end (~20 s): run by CI's slow part with the others.
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_example_runs_and_improves_on_the_background(name, tmp_path, capsys):
    numbers = load_example(name).main(out=tmp_path, quick=True)
    png, nc = tmp_path / f"{name}.png", tmp_path / f"{name}.nc"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ds = xr.open_dataset(nc)
    assert {"truth", "obs", "analysis", "background"} <= set(ds.data_vars)
    assert ds.attrs["converged"] == 1
    # The analysis beats the background over the window and at the initial time
    # (what strong-constraint 4DVar controls). Measured over seeds 0-3, quick and
    # full sizes: window ratio 0.07-0.31, initial-time ratio 0.09-0.62; the bounds
    # (0.5, 0.75) leave a margin, yet no analysis near the background passes.
    assert numbers["rmse_analysis"] < 0.5 * numbers["rmse_background"], numbers
    assert numbers["rmse_analysis_x0"] < 0.75 * numbers["rmse_background_x0"]
    # Over the window the analysis is better than the observations themselves.
    assert numbers["rmse_analysis"] < numbers["obs_noise"], numbers
    # What it returns is what it printed.
    printed = capsys.readouterr().out
    assert f"{numbers['rmse_analysis']:.4f}" in printed
    np.testing.assert_allclose(
        numbers["rmse_analysis"],
        float(np.sqrt(((ds["analysis"] - ds["truth"]) ** 2).mean())),
        rtol=1e-12,
    )


def _dataset(space):
    shape = (4,) + tuple(len(c) for c in space.values())
    values = np.arange(np.prod(shape), dtype=float).reshape(shape)
    coords = {"time": np.arange(4.0), **space}
    dims = ("time", *space)
    obs = np.where(values % 3 == 0, values, np.nan)  # some missing values
    return xr.Dataset(
        {"truth": (dims, values), "obs": (dims, obs), "analysis": (dims, values)},
        coords=coords,
    )


def test_plots_return_figures():
    from matplotlib.figure import Figure

    one = _dataset({"x": np.linspace(0.0, 1.0, 5)})
    two = _dataset({"x": np.arange(3.0), "y": np.arange(2.0)})
    fig = hovmoller(one, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 4  # 3 panels + colourbar
    assert len(snapshot(two, time=2.0).axes) == 4
    assert len(timeseries(one, ("truth", "obs"), max_panels=2).axes) == 2
    # Station observations: markers at the `station` coordinate.
    stations = xr.Dataset(
        {"obs": (("time", "station"), np.ones((4, 2)))},
        coords={"time": np.arange(4.0), "station": [0.25, 0.75]},
    )
    fig = hovmoller(xr.merge([one[["truth"]], stations]), ("truth", "obs"))
    assert fig.axes[1].collections[0].get_offsets().shape == (8, 2)


def test_plot_errors():
    one = _dataset({"x": np.arange(3.0)})
    with pytest.raises(KeyError, match="no variable 'analysis2'"):
        hovmoller(one, ("truth", "analysis2"))
    with pytest.raises(TypeError, match="sequence of names"):
        hovmoller(one, "truth")
    with pytest.raises(ValueError, match="is empty"):
        hovmoller(one, ())
    with pytest.raises(ValueError, match="has no `time` dimension"):
        hovmoller(one.isel(time=0), ("truth",))
    with pytest.raises(ValueError, match=r"space dims \('x',\), expected 2"):
        snapshot(one)
    with pytest.raises(ValueError, match="every value is NaN"):
        hovmoller(one.assign(obs=one["obs"] * np.nan), ("obs",))
    with pytest.raises(ValueError, match="max_panels=...\\) must be >= 1"):
        timeseries(one, max_panels=0)
