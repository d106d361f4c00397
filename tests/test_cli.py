"""The command line: ``assimilax demo NAME`` runs end to end and writes its files."""

import subprocess
import sys

import pytest
import xarray as xr

from assimilax.cli import main


pytest.importorskip("matplotlib")


@pytest.mark.parametrize(
    "name, stem",
    [
        # Three cycles of 200 windows: ~30 s. The demos are CI's slow part.
        pytest.param("lorenz96", "lorenz96_cycling", marks=pytest.mark.slow),
        # The heat demo's `fit` is also what tests/test_fit.py checks.
        pytest.param("heat", "heat1d_learn_kappa", marks=pytest.mark.slow),
        # The pnp demo runs in tests/test_pnp_finetune.py (its fine-tuning claim).
        # Three offline or joint trainings on 48 windows: ~4 min on 2 cores.
        pytest.param("model-error", "model_error", marks=pytest.mark.slow),
        # Real SST (iris-sample-data): EOF, OI learnt by fit, pretraining and
        # fine-tuning a prior: ~4 min on 2 cores.
        pytest.param("sst", "sst", marks=pytest.mark.slow),
    ],
)
def test_demo_writes_netcdf_and_png(name, stem, tmp_path, capsys):
    assert main(["demo", name, "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with xr.open_dataset(tmp_path / f"{stem}.nc") as ds:
        assert ds.sizes  # a readable, non-empty Dataset
    if name == "lorenz96":
        # The learnt B beats DAPPER's scaled climatology, which is printed first,
        # and the flow-dependent B beats both.
        rows = [
            line for line in printed.splitlines() if line.endswith(tuple("0123456789"))
        ]
        clim, learnt, cycled = (float(row.split()[-2]) for row in rows[:3])
        assert cycled < learnt < clim, printed
        with xr.open_dataset(tmp_path / f"{stem}.nc") as ds:
            assert "background_spread" in ds  # the saved cycle is the cycled B's
    elif name == "model-error":
        with xr.open_dataset(tmp_path / f"{stem}.nc") as ds:
            valid = ds["valid_time"].sel(block="test")
            assert float(valid.sel(model="joint")) > float(
                valid.sel(model="uncorrected")
            )
            # Cycled 4DVar with the learnt correction beats the uncorrected model
            # (measured, quick: rmse.a 0.617 against 0.692).
            cycled = ds["cycled_rmse_a"]
            assert float(cycled.sel(model="joint")) < float(
                cycled.sel(model="uncorrected")
            )
    elif name == "sst":
        with xr.open_dataset(tmp_path / f"{stem}.nc") as ds:
            rmse = ds["rmse"].mean("time")
            assert list(ds["method"].values)[-2:] == [
                "learned prior, zero-shot",
                "learned prior, fine-tuned",
            ]
            # Measured (quick, test months): fine-tuned 0.367 / 0.465 / 0.723 K
            # against zero-shot 0.371 / 0.472 / 0.737 at 50 / 70 / 90 % clouds;
            # OI 0.353 / 0.452 / 0.697 against EOF 0.481 / 0.618 / 0.752.
            for clouds in ds["clouds"].values:
                at = rmse.sel(clouds=clouds)
                assert float(at[-1]) < float(at[-2]), at.values
                assert float(at[3]) < float(at[2]) < float(at[0]), at.values
    elif name == "heat":
        assert "Implicit" in printed and "Unrolled" in printed
        assert "GradientFlowAdjoint" in printed


def test_bad_demo_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "assimilax", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "lorenz96" in out.stdout
