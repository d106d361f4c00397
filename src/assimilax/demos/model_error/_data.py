"""The data of the model-error experiment: a two-scale truth, observed in its slow
variables, cut into consecutive assimilation windows split by time."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ...dynamics import TwoScaleLorenz96


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How the truth is run and observed (all times in model time units).

    - `K`, `J`: slow and fast variables per slow one (`TwoScaleLorenz96`'s).
    - `obs_interval`: time between observations (0.05).
    - `obs_std`: Gaussian observation-noise std (1).
    - `observed_fraction`: fraction of the slow variables observed at each
      time, drawn afresh at every time (0.5), in ``(0, 1]``.
    - `window`: observation times per assimilation window (6).
    - `future_windows`: how many following windows' observations the outer
      loss compares the forecast with (2: leads up to 0.9 with the defaults;
      1 and 3 gave shorter validation valid times).
    - `train`, `valid`, `test`: number of consecutive windows in each block,
      in this order in time; the test block is only used for evaluation.
    - `spin_up`: time units run before the first window (20).
    - `max_lead`: the longest forecast lead evaluated (4): the truth runs that
      long past the test block's last start.
    """

    K: int = 36
    J: int = 10
    obs_interval: float = 0.05
    obs_std: float = 1.0
    observed_fraction: float = 0.5
    window: int = 6
    future_windows: int = 2
    train: int = 128
    valid: int = 32
    test: int = 64
    spin_up: float = 20.0
    max_lead: float = 4.0

    def __post_init__(self):
        if not 0.0 < self.observed_fraction <= 1.0:
            raise ValueError(
                "DataConfig(observed_fraction=...) must be in (0, 1] (the fraction "
                f"of slow variables observed per time), got {self.observed_fraction}."
            )
        if self.future_windows < 1:
            raise ValueError(
                f"DataConfig(future_windows=...) must be >= 1, got "
                f"{self.future_windows}."
            )
        if self.window < 1:
            raise ValueError(f"DataConfig(window=...) must be >= 1, got {self.window}.")
        for name in ("train", "valid", "test"):
            if getattr(self, name) < 2:
                raise ValueError(
                    f"DataConfig({name}=...) must be >= 2 windows, got "
                    f"{getattr(self, name)}."
                )

    @property
    def truth_model(self) -> TwoScaleLorenz96:
        return TwoScaleLorenz96(K=self.K, J=self.J)

    @property
    def lead_steps(self) -> int:
        return round(self.max_lead / self.obs_interval)

    @property
    def num_windows(self) -> int:
        return self.train + self.valid + self.test


def make_truth(cfg: DataConfig, key) -> dict[str, np.ndarray]:
    """The truth on the observation grid after spin-up, and its observations.

    Returns a dict of NumPy arrays: `time` ``(T,)``, `state` ``(T, K + K J)``
    (slow then fast), `slow` ``(T, K)``, `coupling` ``(T, K)`` (the slow
    tendency's unresolved term ``-(h c / b) sum_j Y``) and `obs` ``(T, K)``
    (NaN where not observed), with ``T = num_windows window + max(future_windows
    window, lead_steps) + 1``.
    """
    model = cfg.truth_model
    k_start, k_obs = jax.random.split(key)
    n = model.state_shape[0]
    x0 = jnp.concatenate(
        [
            cfg.K / 2 * jnp.ones(cfg.K),
            jnp.zeros(n - cfg.K),
        ]
    ) + 0.1 * jax.random.normal(k_start, (n,))
    future = cfg.future_windows * cfg.window
    num = cfg.num_windows * cfg.window + max(future, cfg.lead_steps)
    time = np.arange(num + 1) * cfg.obs_interval
    # Eager calls with concrete grids: `FixedStepRK4` then runs its compiled scan.
    x0 = model.integrate(x0, np.array([0.0, cfg.spin_up]))[-1]
    states = np.asarray(model.integrate(x0, time))
    slow = np.asarray(model.slow(states))
    coupling = -float(model.h * model.c / model.b) * np.asarray(model.fast(states)).sum(
        -1
    )
    obs = observe(cfg, slow, k_obs)
    return {
        "time": time,
        "state": states,
        "slow": slow,
        "coupling": coupling,
        "obs": obs,
    }


def observe(cfg: DataConfig, slow: np.ndarray, key) -> np.ndarray:
    """Noisy observations of `slow` ``(T, K)``: Gaussian noise of std
    `cfg.obs_std`, a random `cfg.observed_fraction` of the values kept at each
    time, the others NaN (missing)."""
    k_noise, k_mask = jax.random.split(key)
    noise = cfg.obs_std * np.asarray(jax.random.normal(k_noise, slow.shape))
    kept = np.asarray(jax.random.uniform(k_mask, slow.shape)) < cfg.observed_fraction
    return np.where(kept, slow + noise, np.nan)


def make_windows(cfg: DataConfig, truth: dict[str, np.ndarray]) -> dict[str, dict]:
    """Consecutive windows of `cfg.window` observation times, as the blocks
    ``{"train", "valid", "test"}`` of dicts of arrays with a leading window axis.

    Window ``i`` starts at observation time ``t_i = i window``. Its `xb` and
    `xb_std` are a background at ``t_i`` built from observations only: the
    observation there where there is one (std `obs_std`), else the
    climatological mean of all observations (std their climatological std).
    `obs` ``(window, K)`` are the observations at ``t_i + 1 ... t_i + window``
    (the window's, without the one already in the background) and `future`
    ``(future_windows window, K)`` those of the next `future_windows` windows,
    for the outer loss. `slow0` is the true
    slow state at ``t_i``: for evaluation only, never in training.
    """
    obs, L, F = truth["obs"], cfg.window, cfg.future_windows * cfg.window
    mean, std = np.nanmean(obs), np.nanstd(obs)
    starts = np.arange(cfg.num_windows) * L
    first = obs[starts]
    seen = np.isfinite(first)
    windows = {
        "xb": np.where(seen, first, mean),
        "xb_std": np.where(seen, cfg.obs_std, std),
        "obs": np.stack([obs[s + 1 : s + L + 1] for s in starts]),
        "future": np.stack([obs[s + L + 1 : s + L + 1 + F] for s in starts]),
        "slow0": truth["slow"][starts],
    }
    bounds = np.cumsum([0, cfg.train, cfg.valid, cfg.test])
    return {
        name: {k: v[bounds[i] : bounds[i + 1]] for k, v in windows.items()}
        for i, name in enumerate(("train", "valid", "test"))
    }


def climatology(obs: np.ndarray) -> tuple[float, float]:
    """Mean and std of the observed values (NaN skipped): the only climatology
    available without the truth."""
    return float(np.nanmean(obs)), float(np.nanstd(obs))
