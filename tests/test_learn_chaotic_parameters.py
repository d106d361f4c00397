"""`fit` learns chaotic models' parameters from held-out observations: Lorenz-63's
sigma, rho and beta (examples/lorenz63_learn_parameters.py) and Lorenz-96's
forcing (examples/lorenz96_learn_forcing.py); quick settings, float64."""

import numpy as np
import pytest
import xarray as xr

from scripts import load_example


pytest.importorskip("matplotlib")


# A headline claim, ~40 s of Lorenz-63 windows: run by CI's slow part.
@pytest.mark.slow
def test_parameters_recovered_from_twenty_percent_off(tmp_path, capsys):
    ex = load_example("lorenz63_learn_parameters")
    numbers = ex.main(out=tmp_path, quick=True, seed=0)
    # Start 20% off each. Measured over seeds 0-3 (16 windows, 60 steps): sigma
    # within 2.6%, rho 0.25%, beta 0.5% (sigma is the weakest-determined).
    errors = {name: abs(numbers[name]["relative_error"]) for name in ex.TRUE}
    assert errors["sigma"] < 0.04, errors
    assert errors["rho"] < 0.01, errors
    assert errors["beta"] < 0.01, errors
    assert numbers["inner_failures"] == 0
    # fit reached the minimum of its outer loss: the learnt parameters fit the
    # held-out observations better than the true ones do (cold solves, computed
    # apart from fit), and the misfit is near the noise variance.
    assert numbers["loss_learnt"] < numbers["loss_true"], numbers
    assert numbers["loss_learnt"] < 1.5 * ex.NOISE**2, numbers
    # Outputs: the history with the learnt values, what it printed, the plot.
    history = xr.open_dataset(tmp_path / f"{ex.NAME}.nc")
    np.testing.assert_allclose(
        history["sigma"].values[-1], numbers["sigma"]["learnt"], rtol=1e-3
    )
    printed = capsys.readouterr().out
    assert f"{numbers['rho']['learnt']:9.4f}" in printed
    png = (tmp_path / f"{ex.NAME}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_lorenz96_forcing_learnt_from_held_out_observations(tmp_path):
    """examples/lorenz96_learn_forcing.py (quick: 16 windows, ~30 s)."""
    ex = load_example("lorenz96_learn_forcing")
    numbers = ex.main(out=tmp_path, quick=True, seed=0)
    # From F = 6 (-25%). Measured with 16 windows over seeds 0-3: within 2.7%
    # (the held-out observations have unit noise); 32 windows: within 2.0%.
    assert abs(numbers["relative_error"]) < 0.03, numbers
    assert numbers["loss_learnt"] < numbers["loss_true"], numbers
    assert numbers["inner_failures"] == 0
    history = xr.open_dataset(tmp_path / f"{ex.NAME}.nc")
    np.testing.assert_allclose(history["params.F"].values[-1], numbers["F"], rtol=1e-3)
