"""The experiment end to end: data, every method, the test scores."""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from ...datasets import ostia_sst
from ...priors import EnergyPrior
from ._data import anomalies, check_windows, DataConfig, observe, rmse
from ._methods import (
    analyses,
    check_prior,
    eof_analyses,
    eof_basis,
    fine_tune,
    GAUSS_NEWTON,
    LBFGS,
    learn_oi,
    pretrain,
)


METHODS = (
    "climatology",
    "persistence",
    "EOF (DINEOF)",
    "OI, learnt B",
    "learned prior, zero-shot",
    "learned prior, fine-tuned",
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of `run` (defaults: the full experiment; `QUICK` a smaller one).

    - `data`: a `DataConfig` (gap fractions, noise, clouds, grid).
    - `eof_ranks`: the EOF truncations tried; one is chosen per gap fraction on
      the validation months.
    - `oi_steps`: `fit` steps learning the OI background (std, length scale).
    - `width`, `depth`, `pretrain_steps`: the `ConvDenoiser2D` and its pretraining.
    - `weights`: the zero-shot prior weights tried; one is chosen on the
      validation months (all gap fractions together).
    - `fine_tune_steps`, `fine_tune_lr`, `batch_size`: the end-to-end `fit`.
    """

    data: DataConfig = DataConfig()
    eof_ranks: tuple[int, ...] = (4, 8, 12, 20)
    oi_steps: int = 80
    width: int = 8
    depth: int = 3
    pretrain_steps: int = 600
    weights: tuple[float, ...] = (0.3, 1.0, 3.0)
    fine_tune_steps: int = 40
    fine_tune_lr: float = 3e-4
    batch_size: int = 4


QUICK = Config(
    data=DataConfig(lon_stride=3),
    eof_ranks=(4, 8, 12),
    oi_steps=40,
    pretrain_steps=300,
    weights=(0.3, 1.0),
    fine_tune_steps=12,
)


def run(
    cfg: Config, seed: int = 0, *, block: str = "test", verbose: bool = True
) -> dict:
    """Every method on the months of `block` (``"test"``; ``"valid"`` while
    developing, so that the test months are looked at once), for each gap
    fraction. Returns a dict: `rmse` ``{(method, fraction): (months,)}``, the
    chosen settings, the reconstructions, timings."""
    say = print if verbose else (lambda *a: None)
    start = time.perf_counter()

    def stamp() -> str:
        return f"[{time.perf_counter() - start:4.0f} s]"

    ds = ostia_sst()
    data = anomalies(ds, cfg.data)
    ocean = data["ocean"]
    fractions = cfg.data.fractions
    keys = iter(jax.random.split(jax.random.key(seed), 16))
    blocks = {}
    for name in ("train", "valid", "test"):
        blocks[name] = {
            f: observe(data, name, f, cfg.data, next(keys)) for f in fractions
        }
    for name, by_fraction in blocks.items():
        for windows in by_fraction.values():
            check_windows(windows, name)
    train = _pool(blocks["train"].values())
    valid_all = _pool(blocks["valid"].values())

    estimates = {}
    for f, windows in blocks[block].items():
        estimates["climatology", f] = jnp.zeros_like(windows["truth"])
        estimates["persistence", f] = windows["previous"]

    say(f"{stamp()} EOF: choosing the rank on the validation months")
    ranks = {}
    for f in fractions:
        valid = blocks["valid"][f]
        scores = {
            r: float(rmse(eof_analyses(eof_basis(data, r), valid), valid, ocean).mean())
            for r in cfg.eof_ranks
        }
        ranks[f] = min(scores, key=scores.get)
        basis = eof_basis(data, ranks[f])
        estimates["EOF (DINEOF)", f] = eof_analyses(basis, blocks[block][f])
    say(f"   ranks {ranks}")

    say(f"{stamp()} OI: learning the background std and length scale with fit")
    oi_fit = learn_oi(train, ocean, cfg.data.noise_std, cfg.oi_steps, next(keys))
    oi = oi_fit.params
    say(
        f"   std {float(jnp.exp(oi['log_std'])):.3f} K, length "
        f"{float(jnp.exp(oi['log_length'])):.1f} grid points"
    )
    noise = cfg.data.noise_std

    def oi_analyses(windows):
        states, controls, _ = analyses(oi, windows, noise, (), None, GAUSS_NEWTON)
        return states, controls

    starts = {}
    for f in fractions:
        estimates["OI, learnt B", f], starts[block, f] = oi_analyses(blocks[block][f])
    _, starts["valid"] = oi_analyses(valid_all)  # for the zero-shot weight
    _, starts["train"] = oi_analyses(train)

    say(
        f"{stamp()} pretraining a denoiser on the {len(data['blocks']['train'])} "
        "training months"
    )
    network, pretraining = pretrain(
        data, cfg.width, cfg.depth, cfg.pretrain_steps, next(keys)
    )
    check_prior(network, ocean.shape)
    say(
        "   validation loss (standardised) "
        f"{pretraining.attrs['initial_validation_loss']:.4f} -> "
        f"{float(pretraining.validation_loss[-1]):.4f}"
    )

    say(f"{stamp()} zero-shot: choosing the prior weight on the validation months")
    weight_scores = {}
    for weight in cfg.weights:
        prior = (EnergyPrior(network, weight),)
        xa, _, _ = analyses(oi, valid_all, noise, prior, starts["valid"], LBFGS)
        weight_scores[weight] = float(rmse(xa, valid_all, ocean).mean())
        say(f"   weight {weight:g}: validation RMSE {weight_scores[weight]:.4f} K")
    weight = min(weight_scores, key=weight_scores.get)

    say(f"{stamp()} fine-tuning the prior through the argmin (training months)")
    tuned = fine_tune(
        oi,
        network,
        weight,
        train,
        starts["train"],
        noise,
        ocean,
        cfg,
        next(keys),
    )
    tuned_weight = float(jnp.exp(tuned.params["log_weight"]))
    failures = {"fine-tuning": int(tuned.history["inner_failures"].sum())}
    priors = {
        "learned prior, zero-shot": (EnergyPrior(network, weight),),
        "learned prior, fine-tuned": (
            EnergyPrior(tuned.params["network"], tuned_weight),
        ),
    }
    for name, prior in priors.items():
        failures[name] = 0
        for f in fractions:
            xa, _, converged = analyses(
                oi, blocks[block][f], noise, prior, starts[block, f], LBFGS
            )
            estimates[name, f] = xa
            failures[name] += int(np.sum(~np.asarray(converged)))
    say(f"{stamp()} done")

    scores = {
        (name, f): rmse(estimates[name, f], blocks[block][f], ocean)
        for name in METHODS
        for f in fractions
    }
    return {
        "rmse": scores,
        "estimates": {k: np.asarray(v) for k, v in estimates.items()},
        "windows": blocks[block],
        "block": block,
        "data": data,
        "ds": ds,
        "ranks": ranks,
        "oi": {k: float(jnp.exp(v)) for k, v in oi.items()},
        "zero_shot_weight": weight,
        "weight_scores": weight_scores,
        "fine_tuned_weight": tuned_weight,
        "fine_tuning": tuned.history,
        "failures": failures,
        "seconds": time.perf_counter() - start,
        "config": cfg,
    }


def _pool(blocks) -> dict:
    """The windows of several gap fractions as one set."""
    blocks = list(blocks)
    return {k: jnp.concatenate([b[k] for b in blocks]) for k in blocks[0]}
