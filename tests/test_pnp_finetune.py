"""The plug-and-play demo's fine-tuning through the argmin helps on held-out windows
(issue 19), with every training solve converged."""

import pytest
import xarray as xr

from assimilax.demos import pnp


pytest.importorskip("matplotlib")


@pytest.mark.slow
def test_fine_tuning_lowers_held_out_error(tmp_path):
    # The demo's quick form: 1-1.5 min on two busy CPU cores (7 min under this
    # suite's runtime type checks). Measured (seed 0): held-out RMSE 0.0732
    # zero-shot -> 0.0673 fine-tuned, every solve converged. With both learning
    # rates at zero (`NETWORK_LEARNING_RATE`, `WEIGHT_LEARNING_RATE`) the two
    # differ by round-off (0.07317258 -> 0.07317269) and the test fails: it asks
    # for a gain of 1% of the zero-shot error, well above round-off and below
    # the measured 8%.
    numbers = pnp.main(tmp_path, quick=True)
    assert (tmp_path / "pnp_heat2d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with xr.open_dataset(tmp_path / "pnp_heat2d.nc") as ds:
        assert ds["rmse"].sizes["prior"] == 4  # every method on the held-out set
    assert numbers["fine_tuning_failures"] == 0, numbers
    zero_shot = numbers["pretrained, zero-shot"]
    fine_tuned = numbers["pretrained, fine-tuned"]
    assert fine_tuned < 0.99 * zero_shot, numbers
    # The learned priors still beat the tuned Tikhonov prior, which beats none.
    assert zero_shot < numbers["Tikhonov (tuned by fit)"] < numbers["no prior"]
