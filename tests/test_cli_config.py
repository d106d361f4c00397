"""``assimilax assimilate|fit|check CONFIG.toml``: the example configs end to end,
and one test per kind of bad config (exit status 2, a message naming the key)."""

import json
import pathlib

import numpy as np
import pytest
import xarray as xr

from assimilax.cli import main
from assimilax.cli._registry import FAMILIES


ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
ASSIMILATE = CONFIGS / "heat1d_assimilate.toml"
FIT = CONFIGS / "heat1d_fit_kappa.toml"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def table_row(printed: str, header: str, first: str) -> dict[str, str]:
    """The row starting with `first` of the table whose header starts with `header`."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    names = lines[start].split("  ")
    names = [n.strip() for n in names if n.strip()]
    row = next(line for line in lines[start:] if line.split()[0] == first)
    return dict(zip(names, row.split()))


# The example config end to end (~6 s): CI's slow part; config errors and
# `check` are tested below in the default suite.
@pytest.mark.slow
def test_assimilate_example(tmp_path, capsys):
    status, out, err = run(capsys, "assimilate", ASSIMILATE, "--out", tmp_path)
    assert status == 0, err
    row = table_row(out, "window", "0")
    assert row["converged"] == "yes"
    # The observation noise is 0.05 and the background error about 0.5: the
    # analysis of the initial state is below the noise, over the window well
    # below it (the data of all 5 observation times constrain it).
    assert float(row["rmse(a,t0)"]) < 0.05
    assert float(row["rmse(a)"]) < 0.1 * float(row["rmse(b)"])
    # rms(o-a) near the noise std: the analysis fits the data, not the noise.
    assert 0.03 < float(row["rms(o-a)"]) < 0.06
    with xr.open_dataset(tmp_path / "heat1d_assimilate.nc") as ds:
        assert int(ds["converged"]) == 1
        assert "[model]" in ds.attrs["config"]
        error = ds["analysis"] - ds["truth"]
        rmse = float(np.sqrt((error**2).mean()))
    np.testing.assert_allclose(rmse, float(row["rmse(a)"]), rtol=1e-3)

    # The analysis file is a valid input: its `obs` and `truth` read back through
    # [data].netcdf (a path relative to the config) give the same analysis.
    text = ASSIMILATE.read_text().split("[data.twin]")[0]
    config = tmp_path / "again.toml"
    config.write_text(text + '[data]\nnetcdf = "heat1d_assimilate.nc"\n')
    status, out, err = run(capsys, "assimilate", config, "--out", tmp_path)
    assert status == 0, err
    assert table_row(out, "window", "0")["rmse(a)"] == row["rmse(a)"]


# The example config end to end (~8 s): CI's slow part.
@pytest.mark.slow
def test_fit_example(tmp_path, capsys):
    # With the windows of each batch solved one after another (the CLI's own
    # tests of `--devices` run the default, "vmap").
    config = tmp_path / "config" / FIT.name
    config.parent.mkdir()
    config.write_text(FIT.read_text().replace("[fit]", '[fit]\nbatching = "map"'))
    status, out, err = run(capsys, "fit", config, "--out", tmp_path)
    assert status == 0, err
    row = table_row(out, "parameter", "model.kappa")
    assert (row["initial"], row["true"]) == ("1", "0.5")
    with open(tmp_path / "heat1d_fit_kappa_params.json") as file:
        summary = json.load(file)
    kappa = summary["params"]["model.kappa"]["learnt"]
    # From twice the truth to within 3% of it (the finite-sample error of 8
    # windows is about 2%), and the outer loss down by a factor of 5.
    assert abs(kappa - 0.5) < 0.03 * 0.5
    assert summary["loss"]["last"] < summary["loss"]["first"] / 5
    assert summary["inner_failures"] == 0 and summary["stopped"] is None
    with xr.open_dataset(tmp_path / "heat1d_fit_kappa_history.nc") as history:
        assert history.sizes["step"] == 30
        np.testing.assert_allclose(history["model.kappa"][-1], kappa, rtol=0.05)
        assert history.attrs["true model.kappa"] == 0.5
        assert history.attrs["batching"] == "Sequential()"


def test_check_and_dry_run(tmp_path, capsys):
    status, out, _ = run(capsys, "check", FIT)
    assert status == 0 and "config OK" in out and "model.kappa from 1 (log)" in out
    status, out, _ = run(capsys, "fit", FIT, "--dry-run", "--out", tmp_path)
    assert status == 0 and "config OK" in out
    assert not list(tmp_path.iterdir())  # nothing written


def bad(tmp_path, old: str, new: str, source: pathlib.Path = FIT) -> pathlib.Path:
    """A copy of an example config (comments left out) with `old` replaced by `new`."""
    lines = source.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.startswith("#"))
    assert old in text, old
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    return path


MODEL_NAME = "[model].name = 'heat_1d' is not known (did you mean 'heat1d'?)"
HYPERGRADIENT = "[fit].hypergradient = 'implict' is not known"
NOT_LEARNABLE = "[fit.learn].model.kapa: [model] name = 'heat1d' has no"
TRUNCATED = '{ name = "truncated", k = 10 }'
FINITE_POSITIONS = "[observations].positions must hold finite coordinates"


@pytest.mark.parametrize(
    "old, new, message",
    [
        # Unknown section, unknown key (a typo): the allowed names are listed.
        ("[problem]", "[problme]", "unknown section [problme] (did you mean"),
        ("kappa = 0.5", "kapa = 0.5", "unknown key [model].kapa (did you mean"),
        ("every = 4", "every = 4\nfoo = 1", "keys allowed in [observations] here"),
        # Wrong type, bad value, missing value, conflicting values.
        ("n = 64", 'n = "64"', "[model].n must be an integer >= 2, got '64'"),
        ("kappa = 0.5", "kappa = -1", "[model].kappa must be a number >= 0, got -1"),
        ("noise_std = 0.05", "noise_std = 0", "[observations].noise_std must be"),
        ("noise_std = 0.05", "", "[observations].noise_std is required"),
        ("steps = 30", "steps = 30\nepochs = 2", "[fit] needs exactly one of steps"),
        ("every = 4", "every = 4\nindices = [1]", "exactly one of every, indices"),
        ("n = 64", "n = 64\n[", "is not valid TOML"),
        # TOML's nan/inf in station coordinates (they used to snap to point 0).
        ("every = 4", "positions = [0.1, nan, 0.5]", FINITE_POSITIONS),
        ("every = 4", "positions = [-inf]", FINITE_POSITIONS),
        # Unknown names of a model, solver, strategy, optimiser list the choices.
        ('name = "heat1d"', 'name = "heat_1d"', MODEL_NAME),
        ('name = "heat1d"', 'name = "heat3d"', "choose one of: 'heat1d', 'heat2d'"),
        ('name = "gauss_newton"', 'name = "newton"', "[solver].name = 'newton'"),
        ('hypergradient = "implicit"', 'hypergradient = "implict"', HYPERGRADIENT),
        ('name = "adam"', 'name = "adamw"', "[fit.optimiser].name = 'adamw'"),
        # A strategy that cannot differentiate the solver names both.
        ('"implicit"', TRUNCATED, "'truncated' cannot be used with [solver].name"),
        # Fit parameters that do not exist, or cannot be learnt.
        ("learn.model.kappa", "learn.model.kapa", NOT_LEARNABLE),
        ("learn.model.kappa", "learn.model.kapa", "learnable: kappa"),
        ("learn.model.kappa = 1.0", "learn.model.n = 32", "learnable parameter 'n'"),
        ("learn.model.kappa", "learn.prior.weight", "there is no [prior] section"),
        ("kappa = 1.0", "kappa = -1.0", "[fit.learn].model.kappa must be a number"),
        # Sizes that do not fit the data.
        ("steps = 30", "steps = 30\nbatch_size = 9", "[fit].batch_size = 9 is more"),
        ("steps = 30", 'steps = 30\nbatching = "pmap"', "[fit].batching = 'pmap'"),
        ('loss = "truth"', 'loss = "truth"\nvalidation = 1', "[fit].validation must"),
        (
            "[data.twin]",
            '[data]\nnetcdf = "x.nc"\n[data.twin]',
            "exactly one of netcdf",
        ),
    ],
)
def test_bad_config_is_exit_status_2_naming_the_key(
    tmp_path, capsys, old, new, message
):
    status, out, err = run(capsys, "fit", bad(tmp_path, old, new), "--out", tmp_path)
    assert status == 2
    assert err.startswith("assimilax: config error: "), err
    assert message in err, err
    assert "Traceback" not in err and not out


def test_missing_files_and_missing_fit_section(tmp_path, capsys):
    status, _, err = run(capsys, "assimilate", tmp_path / "nope.toml")
    assert status == 2 and "config file not found" in err and "nope.toml" in err
    # A data file is looked for next to the config; the message gives the path.
    config = tmp_path / "file.toml"
    text = ASSIMILATE.read_text().split("[data.twin]")[0]
    config.write_text(text + '[data]\nnetcdf = "missing.nc"\n')
    status, _, err = run(capsys, "assimilate", config)
    expected = f"file not found: {tmp_path / 'missing.nc'}"
    assert status == 2 and "[data].netcdf = 'missing.nc': " + expected in err, err
    status, _, err = run(capsys, "fit", ASSIMILATE, "--out", tmp_path)
    assert status == 2 and "`assimilax fit` needs a [fit] section" in err


def test_every_option_is_documented():
    docs = (ROOT / "docs" / "cli.md").read_text()
    missing = [
        f"[{family.section}] {name}.{option.key}"
        for family in FAMILIES
        for name, choice in family.choices.items()
        for option in family.options(name)
        if f"`{option.key}`" not in docs or f"`{name}`" not in docs
    ]
    assert not missing, missing


LORENZ63 = """
[model]
name = "lorenz63"
[observations]
noise_std = 1.0
[background]
kind = "diagonal"
std = 2.0
[problem]
kind = "3dvar"
[solver]
name = "gradient_descent"
max_steps = 2
[data.twin]
interval = 0.05
steps = 2
spinup = 1.0
perturb_background = true
"""


def test_non_converged_solve_is_reported_with_status_1(tmp_path, capsys):
    config = tmp_path / "l63.toml"
    config.write_text(LORENZ63)
    status, out, err = run(capsys, "assimilate", config, "--out", tmp_path)
    assert status == 1
    assert table_row(out, "window", "0")["converged"] == "NO"
    assert "window 0: the inner solve did not converge (2 steps" in err
    with xr.open_dataset(tmp_path / "l63.nc") as ds:  # written all the same
        assert int(ds["converged"]) == 0 and int(ds["num_steps"]) == 2


@pytest.mark.parametrize(
    "changes",
    [
        # Weak-constraint 4DVar of Lorenz-63, a learnt model-error std.
        {
            'kind = "3dvar"': 'kind = "weak4dvar"\nmodel_error_std = 0.1',
            "[data.twin]": "[fit]\nlearn.problem.model_error_std = 0.5\nsteps = 2"
            "\n[data.twin]\nwindows = 2",
        },
        # Unsupervised (held-out observations), a Tikhonov prior, unrolled.
        {
            "[problem]": '[prior]\nkind = "tikhonov"\nweight = 0.1\n[problem]',
            "[data.twin]": "[fit]\nlearn.model.rho = 20\nlearn.prior.weight = 1.0\n"
            'loss = "observations"\nhypergradient = "unrolled"\nsteps = 2\n'
            "[data.twin]\nwindows = 2",
        },
    ],
)
def test_check_builds_other_problems_and_losses(tmp_path, capsys, changes):
    text = LORENZ63
    for old, new in changes.items():
        text = text.replace(old, new)
    config = tmp_path / "variant.toml"
    config.write_text(text)
    status, out, err = run(capsys, "check", config)
    assert status == 0, err
    assert "config OK" in out


HEAT2D = """
[model]
name = "heat2d"
shape = [6, 6]
kappa = 0.05
[observations]
operator = "mask"
fraction = 0.5
noise_std = 0.05
[background]
kind = "diagonal"
std = 1.0
[problem]
kind = "strong4dvar"
[solver]
name = "gauss_newton"
max_steps = 3
"""


def test_netcdf_lat_lon_dims_are_read_as_y_x(tmp_path, capsys):
    """A (time, lat, lon) file on a square grid gives the analysis of the same data
    stored (time, x, y): the dims are placed by name, not by their file order."""
    twin = tmp_path / "twin.toml"
    twin.write_text(HEAT2D + "[data.twin]\ninterval = 0.01\nsteps = 4\n")
    status, out, err = run(capsys, "assimilate", twin, "--out", tmp_path)
    assert status == 0, err
    with xr.open_dataset(tmp_path / "twin.nc") as ds:
        data = ds[["obs", "truth"]].load()
    assert data["obs"].dims == ("time", "x", "y")
    rows = {}
    geographic = data.rename(x="lon", y="lat").transpose("time", "lat", "lon")
    unknown = data.rename(x="col", y="row").transpose("time", "row", "col")
    for name, ds in [("xy", data), ("latlon", geographic), ("unknown", unknown)]:
        ds.to_netcdf(tmp_path / f"{name}.nc")
        config = tmp_path / f"{name}.toml"
        config.write_text(HEAT2D + f'[data]\nnetcdf = "{name}.nc"\n')
        rows[name] = run(capsys, "assimilate", config, "--out", tmp_path)
    status, out, err = rows["xy"]
    assert status == 0, err
    xy = table_row(out, "window", "0")
    status, out, err = rows["latlon"]
    assert status == 0, err
    assert table_row(out, "window", "0") == xy
    status, out, err = rows["unknown"]
    assert status == 2 and "Traceback" not in err
    assert "variable 'obs': `ds['obs']` has space dims ('row', 'col')" in err, err
    assert "Rename them: `x` is the first axis of a state" in err, err
