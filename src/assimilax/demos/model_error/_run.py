"""The experiment end to end: data, the four models, their forecast skill."""

import dataclasses

import jax
import numpy as np
import optax

from ... import bilevel as ax
from ...dynamics import LinearCorrection
from ._cycling import cycled_rmse
from ._data import climatology, DataConfig, make_truth, make_windows
from ._evaluate import evaluation_set, forecast_rmse, valid_time
from ._models import Experiment, network
from ._train import train_joint, train_truth, train_two_step


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of `run` (defaults: the full experiment; `QUICK` a short one).

    - `data`: a `DataConfig`.
    - `dt`: the RK4 step of the one-scale models (0.05: Lorenz-96's own, as
      accurate as 0.01 for these forecasts).
    - `hidden`, `depth`, `width`: of the `LocalConvCorrection`.
    - `joint_steps`, `batch_size`, `joint_lr`, `joint_decay`: the `fit` of
      ours, `optax.adam` with a cosine decay from `joint_lr` to `joint_decay`
      times it (a constant rate let the validation skill drift back down).
    - `offline_steps`, `offline_lr`: the two offline fits (two-step, truth).
    - `inner_rtol`, `inner_max_steps`: the 4DVar solves (`LBFGS`).
    - `cycle_b_scale`: cycled 4DVar on the test block uses ``B = cycle_b_scale
      x`` the climatological variance of the slow variables estimated from the
      training observations (their variance less the noise's), for every model
      (0.1, DAPPER's Lorenz-96 convention); `cycle_window`: observation times
      per cycled window (2, sliding by one).
    """

    data: DataConfig = DataConfig()
    dt: float = 0.05
    hidden: int = 32
    depth: int = 3
    width: int = 5
    joint_steps: int = 300
    batch_size: int = 8
    joint_lr: float = 1e-2
    joint_decay: float = 0.05
    offline_steps: int = 2000
    offline_lr: float = 3e-3
    inner_rtol: float = 1e-6
    inner_max_steps: int = 300
    cycle_b_scale: float = 0.1
    cycle_window: int = 2


QUICK = Config(
    data=DataConfig(train=48, valid=16, test=32),
    joint_steps=150,
    offline_steps=600,
)


def run(cfg: Config, seed: int = 0, *, verbose: bool = True) -> dict:
    """Learn the three corrections on the training block and score the four
    models on the validation and test blocks. Returns a dict of results."""
    data = cfg.data
    key_truth, key_net = jax.random.split(jax.random.key(seed))
    truth = make_truth(data, key_truth)
    blocks = make_windows(data, truth)
    L = data.window
    train_end = data.train * L  # observation index where validation starts
    mean, std = climatology(truth["obs"][:train_end])
    experiment = Experiment(data.K, 10.0, cfg.dt, data.obs_interval, L, data.obs_std)
    init = network(
        key_net, mean, std, width=cfg.width, hidden=cfg.hidden, depth=cfg.depth
    )
    solver = ax.LBFGS(rtol=cfg.inner_rtol, max_steps=cfg.inner_max_steps)
    train = {k: v for k, v in blocks["train"].items() if k != "slow0"}  # no truth

    corrections, timings, extra = {"uncorrected": LinearCorrection()}, {}, {}
    say = print if verbose else (lambda *a: None)
    say("training truth-trained (supervised upper bound)...")
    corrections["truth-trained"], _, timings["truth-trained"] = train_truth(
        init,
        truth["slow"][:train_end],
        truth["coupling"][:train_end],
        steps=cfg.offline_steps,
        learning_rate=cfg.offline_lr,
    )
    say("training two-step (analyses, then offline)...")
    corrections["two-step"], _, timings["two-step"] = train_two_step(
        experiment,
        init,
        train,
        solver,
        steps=cfg.offline_steps,
        learning_rate=cfg.offline_lr,
    )
    say("training joint (fit through 4DVar)...")
    result, timings["joint"] = train_joint(
        experiment,
        init,
        train,
        solver=solver,
        steps=cfg.joint_steps,
        batch_size=cfg.batch_size,
        learning_rate=optax.cosine_decay_schedule(
            cfg.joint_lr, cfg.joint_steps, alpha=cfg.joint_decay
        ),
    )
    corrections["joint"] = result.params
    extra["joint_history"] = result.history
    extra["joint_stopped"] = result.stopped

    clim_std = float(np.std(truth["slow"][:train_end]))
    leads = np.arange(data.lead_steps + 1) * data.obs_interval
    scores = {}
    for block, first in (("valid", train_end), ("test", train_end + data.valid * L)):
        last = first + (data.valid if block == "valid" else data.test) * L
        starts, future = evaluation_set(truth, first, L, data.lead_steps)
        keep = np.arange(first, truth["slow"].shape[0] - data.lead_steps, L) < last
        starts, future = starts[keep], future[keep]
        for name, correction in corrections.items():
            rmse = forecast_rmse(
                experiment.model(correction), starts, future, data.obs_interval
            )
            scores[block, name] = {
                "rmse": rmse,
                "nrmse": rmse / clim_std,
                "valid_time": valid_time(leads, rmse / clim_std),
                # False: the error stays below 0.5 up to `max_lead` (a lower bound).
                "crossed": bool(np.any(rmse / clim_std >= 0.5)),
            }
    say("cycled 4DVar on the test block...")
    train_obs = truth["obs"][:train_end]
    variance = max(float(np.nanvar(train_obs)) - data.obs_std**2, data.obs_std**2)
    test_first = train_end + data.valid * L
    cycling = {
        name: cycled_rmse(
            experiment.model(correction),
            truth,
            test_first,
            test_first + data.test * L,
            obs_std=data.obs_std,
            background_var=cfg.cycle_b_scale * variance,
            window=cfg.cycle_window,
        )
        for name, correction in corrections.items()
    }
    return {
        "cycling": cycling,
        "leads": leads,
        "clim_std": clim_std,
        "scores": scores,
        "timings": timings,
        "corrections": corrections,
        "experiment": experiment,
        "truth": truth,
        **extra,
    }
