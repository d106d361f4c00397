"""The xarray scripting tutorial's script runs (quick settings), its netCDF files
read back as written, its numbers are those of a working assimilation, and the
tutorial shows only code that the script runs."""

import re

import numpy as np
import pytest
import xarray as xr

from scripts import EXAMPLES, load_example, ROOT


pytest.importorskip("matplotlib")

from assimilax.assimilation import analysis_rmse  # noqa: E402


SCRIPT = EXAMPLES / "xarray_scripting.py"
TUTORIAL = ROOT / "docs" / "tutorials" / "xarray-scripting.md"


# The tutorial's scripts end to end (~16 s); the library calls they make are
# tested in tests/test_io.py. Run by CI's slow part with the other examples.
@pytest.mark.slow
def test_script_outputs(tmp_path, capsys):
    numbers = load_example(SCRIPT.stem).main(out=tmp_path, quick=True)
    printed = capsys.readouterr().out
    # Section 1: 5 times x 4 stations, one value missing.
    assert numbers["own_observed"] == 19
    assert "(5, 4) 19" in printed
    # The analysis is better than the observations and than the background (quick
    # size, seed 0: 0.024 against noise 0.05 and a background's 0.2; the bounds
    # leave a factor 2 yet reject an analysis that stayed near the background).
    assert numbers["converged"] == 1
    assert numbers["rmse_analysis"] < numbers["obs_noise"], numbers
    assert numbers["rmse_analysis"] < 0.5 * numbers["rmse_background"], numbers
    # The netCDF file holds the analysis exactly: the RMSE computed from the file
    # is the one computed in memory, to the last bit (float64 throughout).
    with xr.open_dataset(tmp_path / "analysis.nc") as back:
        assert back["analysis"].dtype == np.float64
        assert {"analysis", "background", "obs", "truth", "cost_after"} <= set(
            back.data_vars
        )
        assert analysis_rmse(back) == numbers["rmse_analysis"]
        assert back.attrs["result"] == "successful"
    # Cycled 3DVar: analyses beat forecasts, and both beat the unit noise.
    assert numbers["cycle_rmse_a"] < numbers["cycle_rmse_f"] < 1.0, numbers
    with xr.open_dataset(tmp_path / "cycle.nc") as cycled:
        assert bool(cycled["converged"].all())
        # The time average after the burn-in, from the file, is the attr.
        after = cycled["time"] > cycled.attrs["t0"] + cycled.attrs["burn_in"]
        average = float(cycled["rmse.a"].where(after).mean())
        np.testing.assert_allclose(average, numbers["cycle_rmse_a"], rtol=1e-12)
    # The windows file has its `window` dim and only observed times.
    with xr.open_dataset(tmp_path / "windows.nc") as windows:
        assert dict(windows.sizes) == {"window": 4, "time": 5, "x": 64, "station": 16}
        assert not bool(windows["obs"].isnull().any())
    # `fit` moved kappa from 1 (twice the truth) most of the way to the truth 0.5
    # (seed 0, 20 steps: 0.53), and its history was saved.
    start, learnt, true = (
        numbers[k] for k in ("kappa_first", "kappa_learnt", "kappa_true")
    )
    assert start == 1.0
    assert abs(learnt - true) < 0.25 * abs(start - true), numbers
    with xr.open_dataset(tmp_path / "history.nc") as history:
        assert history.sizes["step"] == 20
        assert float(history["loss"][-1]) < 0.5 * float(history["loss"][0])
    assert (tmp_path / "analysis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _blocks(markdown: str) -> list[list[str]]:
    found = re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)
    return [[line.strip() for line in b.splitlines() if line.strip()] for b in found]


def test_tutorial_code_is_the_scripts():
    # Every Python block of the tutorial is a run of consecutive lines of the script
    # (indentation aside), so the tutorial shows only code that this test runs.
    script = [line.strip() for line in SCRIPT.read_text().splitlines()]
    script = [line for line in script if line]
    blocks = _blocks(TUTORIAL.read_text())
    assert len(blocks) >= 7, len(blocks)
    for block in blocks:
        starts = [i for i, line in enumerate(script) if line == block[0]]
        assert any(script[i : i + len(block)] == block for i in starts), "\n".join(
            block
        )
