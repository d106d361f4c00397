"""``assimilax fit --devices / --distributed``: the heat-1D example config with its
batches split over 4 CPU devices (a subprocess: the device count is fixed at
start-up) learns what one device learns; bad device options are config errors."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from assimilax.cli import main


ROOT = pathlib.Path(__file__).resolve().parents[1]
FIT = ROOT / "examples" / "configs" / "heat1d_fit_kappa.toml"


def _short_config(tmp_path: pathlib.Path) -> pathlib.Path:
    # 8 steps instead of 30 (batches of all 8 windows); the rest as in the example.
    text = FIT.read_text().replace("steps = 30", "steps = 8")
    assert "steps = 8" in text
    config = tmp_path / FIT.name
    config.write_text(text)
    return config


def _fit(config: pathlib.Path, out: pathlib.Path, *options: str) -> float:
    env = dict(os.environ)
    flags = os.environ.get("XLA_FLAGS", "")  # the suite's own, plus the devices
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4"
    command = [sys.executable, "-m", "assimilax", "fit", str(config), "--out", str(out)]
    done = subprocess.run(
        command + list(options), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "heat1d_fit_kappa_params.json").read_text())
    return summary["params"]["model.kappa"]["learnt"]


# Two fits in subprocesses (~21 s on 2 cores): slow. The same 4-device split is
# checked at the library level by tests/test_sharded_fit.py in the default suite.
@pytest.mark.slow
def test_fit_over_four_devices_matches_one(tmp_path):
    config = _short_config(tmp_path)
    one = _fit(config, tmp_path / "one")
    four = _fit(config, tmp_path / "four", "--devices", "all")
    # Gauss-Newton with CG to 1e-10: round-off in the per-device programs moves
    # the result by ~1e-8 (docs/scaling-out.md), far below the change made by
    # learning (from 1.0 towards the truth 0.5: 0.695 after 8 steps).
    assert 0.5 < one < 0.75
    assert four == pytest.approx(one, rel=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--devices", "99"], "--devices must be 'all' or an int in [1, "),
        (["--devices", "two"], "--devices must be 'all' or an int"),
        (["--distributed", "--devices", "1"], "--distributed uses every device"),
    ],
)
def test_bad_device_options_are_config_errors(options, message, tmp_path, capsys):
    status = main(["fit", str(_short_config(tmp_path)), "--dry-run", *options])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err


def test_map_batching_over_devices_is_a_config_error(tmp_path, capsys):
    config = _short_config(tmp_path)
    config.write_text(config.read_text().replace("[fit]", '[fit]\nbatching = "map"'))
    status = main(["fit", str(config), "--dry-run", "--devices", "1"])
    err = capsys.readouterr().err
    assert status == 2
    assert '[fit].batching = "map" cannot split a batch over devices' in err
