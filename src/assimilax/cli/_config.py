"""A config file (TOML) read into frozen dataclasses, every value checked.

`load_config` parses the file with `tomllib`, checks every section against the
declarations of `_registry` and the dataclasses below, and raises a
`ConfigError` naming the key at the first problem. Nothing is computed here.
"""

import dataclasses
import difflib
import tomllib
from pathlib import Path

from ..learning._step import BATCHING
from ._options import Named, read_choice, resolve_file, UNIT_INTERVAL
from ._registry import (
    BACKGROUNDS,
    HYPERGRADIENTS,
    MODELS,
    OPERATORS,
    OPTIMISERS,
    PRIORS,
    PROBLEMS,
    SOLVERS,
)
from ._table import (
    Bound,
    check_choice,
    check_number,
    ConfigError,
    NONNEGATIVE,
    POSITIVE,
    Table,
)


SECTIONS = (
    "model",
    "observations",
    "background",
    "prior",
    "problem",
    "solver",
    "data",
    "output",
    "fit",
)
# The sections whose options `[fit.learn]` may name.
LEARNABLE_SECTIONS = ("model", "observations", "background", "prior", "problem")
DEFAULT_OUTPUT = "assimilax-output"
AT_LEAST_1 = Bound(">=", 1)


@dataclasses.dataclass(frozen=True)
class TwinConfig:
    """``[data.twin]``: windows generated from a known truth."""

    seed: int
    windows: int
    t0: float
    interval: float
    steps: int
    observe_every: int
    spinup: float
    perturb_background: bool
    truth_model: Named

    @property
    def times(self) -> list[float]:
        """The window's model times ``t0 + interval * [0, ..., steps]``."""
        return [self.t0 + self.interval * k for k in range(self.steps + 1)]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """``[data]``: a netCDF file or a twin experiment, and the variable names."""

    netcdf: Path | None
    twin: TwinConfig | None
    obs: str
    truth: str
    xb: str
    window: int | None


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """``[output]``: the folder and the stem of the files written."""

    folder: Path
    name: str


@dataclasses.dataclass(frozen=True)
class Learnable:
    """One parameter learnt by ``fit``: where it is, its start, its transform."""

    section: str
    key: str
    initial: float
    transform: str

    @property
    def name(self) -> str:
        """``section.key``, e.g. ``model.kappa``."""
        return f"{self.section}.{self.key}"


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """``[fit]``: what to learn, the outer loss, the strategy and the schedule."""

    learn: tuple[Learnable, ...]
    loss: str
    holdout: float
    hypergradient: Named
    optimiser: Named
    steps: int | None
    epochs: int | None
    batch_size: int | None
    validation: float
    validate_every: int
    checkpoint_dir: str
    checkpoint_every: int | None
    resume: bool
    seed: int
    warm_start: bool | None
    progress: bool
    batching: str


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole experiment: every section, checked."""

    path: Path
    text: str
    model: Named
    observations: Named
    background: Named
    prior: Named | None
    problem: Named
    solver: Named
    data: DataConfig
    output: OutputConfig
    fit: FitConfig | None

    def section(self, name: str) -> Named | None:
        """The choice read from section `name` (``model``, ``background``...)."""
        sections = {
            "model": self.model,
            "observations": self.observations,
            "background": self.background,
            "prior": self.prior,
            "problem": self.problem,
            "solver": self.solver,
        }
        return sections[name]

    def with_resume(self) -> "Config":
        """This config with ``[fit].resume = true`` (the ``--resume`` flag)."""
        if self.fit is None:
            return self
        return dataclasses.replace(self, fit=dataclasses.replace(self.fit, resume=True))


def load_config(path: str | Path, *, out: str | Path | None = None) -> Config:
    """Read and check the config file at `path`.

    `out` (from the command line, relative to the working directory) replaces
    ``[output].folder``. **Raises:** `ConfigError` naming the key at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    base = path.resolve().parent
    top = Table(raw, "")
    top.finish(SECTIONS)
    model = read_choice(_section(top, "model"), MODELS, base)
    observations = read_choice(_section(top, "observations"), OPERATORS, base)
    background = read_choice(_section(top, "background"), BACKGROUNDS, base)
    prior_table = top.table("prior", None)
    prior = None if prior_table is None else read_choice(prior_table, PRIORS, base)
    problem = read_choice(_section(top, "problem", required=False), PROBLEMS, base)
    solver = read_choice(_section(top, "solver"), SOLVERS, base)
    data = _data(_section(top, "data"), model, base)
    output = _output(top.table("output", None), path, base, out)
    fit_table = top.table("fit", None)
    config = Config(
        path, text, model, observations, background, prior, problem, solver, data,
        output, None,
    )  # fmt: skip
    if fit_table is not None:
        config = dataclasses.replace(config, fit=_fit(fit_table, config, base))
    return config


def _section(top: Table, name: str, required: bool = True) -> Table:
    if top.has(name):
        return top.table(name)
    if required:
        raise ConfigError(f"the [{name}] section is required but missing")
    return Table({}, name)


def _data(table: Table, model: Named, base: Path) -> DataConfig:
    table.finish(("netcdf", "twin", "obs", "truth", "xb", "window"))
    netcdf = table.string("netcdf", None)
    twin_table = table.table("twin", None)
    if (netcdf is None) == (twin_table is None):
        raise ConfigError(
            '[data] needs exactly one of netcdf = "FILE.nc" (observations in a '
            "file) and a [data.twin] table (a generated twin experiment)"
        )
    if netcdf is not None:
        netcdf = resolve_file("[data].netcdf", netcdf, base)
    twin = None if twin_table is None else _twin(twin_table, model, base)
    names = {key: table.string(key, key) for key in ("obs", "truth", "xb")}
    window = table.integer("window", None, NONNEGATIVE)
    table.finish()
    return DataConfig(netcdf, twin, window=window, **names)


def _twin(table: Table, model: Named, base: Path) -> TwinConfig:
    table.finish([f.name for f in dataclasses.fields(TwinConfig)])
    truth_table = table.table("truth_model", {})
    truth_model = read_choice(
        truth_table, MODELS, base, defaults=model.options, name=model.name
    )
    twin = TwinConfig(
        seed=table.integer("seed", 0, NONNEGATIVE),
        windows=table.integer("windows", 1, AT_LEAST_1),
        t0=table.number("t0", 0.0),
        interval=table.number("interval", bound=POSITIVE),
        steps=table.integer("steps", bound=AT_LEAST_1),
        observe_every=table.integer("observe_every", 1, AT_LEAST_1),
        spinup=table.number("spinup", 0.0, NONNEGATIVE),
        perturb_background=table.boolean("perturb_background", False),
        truth_model=truth_model,
    )
    table.finish()
    return twin


def _output(table: Table | None, path: Path, base: Path, out) -> OutputConfig:
    folder, name = None, path.stem
    if table is not None:
        table.finish(("folder", "name"))
        folder = table.string("folder", None)
        name = table.string("name", name)
        table.finish()
        if not name or "/" in name or "\\" in name:
            raise ConfigError(
                f"[output].name must be a file stem (no folder), got {name!r}"
            )
    if out is not None:
        folder = Path(out)
    elif folder is not None:
        folder = base / Path(folder).expanduser()
    else:
        folder = Path(DEFAULT_OUTPUT)
    return OutputConfig(folder, name)


def _fit(table: Table, config: Config, base: Path) -> FitConfig:
    table.finish([f.name for f in dataclasses.fields(FitConfig)])
    learn = _learn(table.table("learn"), config)
    loss = table.string("loss", "truth", ("truth", "observations"))
    hypergradient = _named(table, "hypergradient", HYPERGRADIENTS, base)
    optimiser = _named(table, "optimiser", OPTIMISERS, base)
    steps = table.integer("steps", None, AT_LEAST_1)
    epochs = table.integer("epochs", None, AT_LEAST_1)
    if (steps is None) == (epochs is None):
        raise ConfigError("[fit] needs exactly one of steps and epochs")
    fit = FitConfig(
        learn=learn,
        loss=loss,
        holdout=table.number("holdout", 0.25, (POSITIVE, Bound("<", 1))),
        hypergradient=hypergradient,
        optimiser=optimiser,
        steps=steps,
        epochs=epochs,
        batch_size=table.integer("batch_size", None, AT_LEAST_1),
        validation=table.number("validation", 0.0, UNIT_INTERVAL),
        validate_every=table.integer("validate_every", 10, AT_LEAST_1),
        checkpoint_dir=table.string("checkpoint_dir", f"{config.output.name}_ckpt"),
        checkpoint_every=table.integer("checkpoint_every", None, AT_LEAST_1),
        resume=table.boolean("resume", False),
        seed=table.integer("seed", 0, NONNEGATIVE),
        warm_start=table.boolean("warm_start", None),
        progress=table.boolean("progress", True),
        batching=table.string("batching", "vmap", BATCHING),
    )
    table.finish()
    return fit


def _named(table: Table, key: str, family, base: Path) -> Named:
    """A choice given as a name (``key = "adam"``) or a table with `name`."""
    value = table.raw(key, {})
    if isinstance(value, str):
        check_choice(table.where(key), value, family.choices)
        value = {family.selector: value}
    return read_choice(Table(value, f"fit.{key}"), family, base)


def _learn(table: Table, config: Config) -> tuple[Learnable, ...]:
    learnt = []
    for section, value in table.data.items():
        if section not in LEARNABLE_SECTIONS or not isinstance(value, dict):
            hint = difflib.get_close_matches(section, LEARNABLE_SECTIONS, n=1)
            hint = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                f"[fit.learn].{section}{hint}: name a parameter as section.key, "
                "e.g. learn.model.kappa = 1.0, with the section one of: "
                + ", ".join(LEARNABLE_SECTIONS)
            )
        sub = table.table(section)
        named = config.section(section)
        if named is None:
            raise ConfigError(
                f"[fit.learn].{section}: there is no [{section}] section to learn from"
            )
        for key in sub.data:
            where = f"[fit.learn].{section}.{key}"
            if key not in named.learnable:
                listing = ", ".join(named.learnable) or "none"
                raise ConfigError(
                    f"{where}: {named.where} {named.family.selector} = "
                    f"{named.name!r} has no learnable parameter {key!r}; "
                    f"learnable: {listing}"
                )
            learnt.append(_learnable(sub, key, named, section, where))
        sub.finish(named.learnable)
    if not learnt:
        raise ConfigError("[fit.learn] names no parameter to learn")
    return tuple(learnt)


def _learnable(sub: Table, key: str, named: Named, section: str, where: str):
    option = named.option(key)
    current = named.options[key]
    if not isinstance(current, float | int):
        raise ConfigError(
            f"{where}: only a single number can be learnt, but {named.where}.{key} "
            f"is {current!r}"
        )
    default_transform = "log" if option.positive else "identity"
    value = sub.raw(key)
    if isinstance(value, dict):
        spec = Table(value, f"fit.learn.{section}.{key}")
        initial = spec.number("initial", float(current), option.bound)
        transform = spec.string("transform", default_transform, ("log", "identity"))
        spec.finish()
    else:
        initial = check_number(where, value, option.bound, integer=False)
        transform = default_transform
    if transform == "log" and not initial > 0:
        raise ConfigError(
            f"{where}: transform = 'log' needs an initial value > 0, got {initial}"
        )
    return Learnable(section, key, initial, transform)
