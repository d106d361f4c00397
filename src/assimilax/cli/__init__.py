"""The command line: ``assimilax demo NAME``, ``assimilate``, ``fit``, ``check``.

    assimilax demo heat               # learn a diffusivity through 4DVar with `fit`
    assimilax demo lorenz96           # cycled 4DVar, a learnt background covariance
    assimilax demo model-error        # learn a model's missing physics through 4DVar
    assimilax demo pnp                # a plug-and-play prior: zero-shot, fine-tuned
    assimilax demo sst                # real SST under clouds: EOF, OI, learned prior
    assimilax assimilate CONFIG.toml  # the analysis of every window of an experiment
    assimilax fit CONFIG.toml         # learn parameters through the analyses
    assimilax check CONFIG.toml       # check a config without solving anything
    assimilax fit CONFIG.toml --devices all  # batches split over this host's devices
    assimilax fit CONFIG.toml --distributed  # ... over every device of every process

Each demo runs on embedded defaults (its data is generated), prints a summary
table and writes a netCDF file and a PNG plot (matplotlib) into ``--out``
(default ``assimilax-output/``). ``assimilate`` and ``fit`` run the experiment a
TOML config describes (schema: ``docs/cli.md``); a bad config is reported as
``assimilax: config error: ...`` with exit status 2. Computations are in
float64. Compiled programs are kept in JAX's persistent compilation cache
(``--compilation-cache DIR``, default ``$ASSIMILAX_CACHE_DIR`` or
``~/.cache/assimilax/jax``; ``--no-compilation-cache`` to turn it off), so a
second run loads them instead of compiling.
"""

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    from ..demos import DEMOS

    parser = argparse.ArgumentParser(
        prog="assimilax",
        description="Variational data assimilation inside bilevel learning.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="run a demo on embedded defaults",
        description="Run a demo: prints a summary, writes netCDF and PNG files.",
    )
    # Every command's namespace has the same attributes (no probing later).
    demo.set_defaults(resume=False, distributed=False, devices=None)
    demo.add_argument("name", choices=sorted(DEMOS), help="which demo")
    demo.add_argument("--out", default="assimilax-output", help="output folder")
    demo.add_argument("--quick", action="store_true", help="a smaller, faster run")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    _cache_options(demo)
    helps = {
        "assimilate": "analyse every window of the experiment in CONFIG",
        "fit": "learn the parameters named in [fit.learn] of CONFIG",
        "check": "check CONFIG (and build its data and problems) without solving",
    }
    for name, text in helps.items():
        command = commands.add_parser(
            name,
            help=text,
            description=text + ".",
            epilog="The config file's schema, with examples: docs/cli.md.",
        )
        command.set_defaults(out=None, resume=False, distributed=False, devices=None)
        command.add_argument("config", help="the experiment, a TOML file")
        _cache_options(command)
        if name == "check":
            continue
        command.add_argument(
            "--out", default=None, help="output folder (replaces [output].folder)"
        )
        command.add_argument(
            "--dry-run", action="store_true", help="check the config, run nothing"
        )
        if name == "fit":
            command.add_argument(
                "--resume",
                action="store_true",
                help="continue from the newest checkpoint (as [fit].resume = true)",
            )
            _scaling_options(command)
    return parser


def _cache_options(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group(
        "compilation cache",
        "compiled programs are kept on disk and reused by later runs (JAX's "
        "persistent compilation cache)",
    )
    group.add_argument(
        "--compilation-cache",
        default="",
        metavar="DIR",
        help="the cache folder (default: $ASSIMILAX_CACHE_DIR or "
        "~/.cache/assimilax/jax)",
    )
    group.add_argument(
        "--no-compilation-cache",
        dest="compilation_cache",
        action="store_const",
        const=None,
        help="compile everything anew, keep nothing on disk",
    )


def _scaling_options(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group(
        "scaling out", "split each batch of windows over devices and hosts"
    )
    group.add_argument(
        "--devices",
        default=None,
        metavar="N|all",
        help="split each batch over this process's first N devices (default 1)",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run (jax.distributed.initialize): each process "
        "reads its share of the windows, batches split over every device",
    )
    group.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="process 0's address (default: $JAX_COORDINATOR_ADDRESS or the cluster)",
    )
    group.add_argument(
        "--num-processes",
        type=int,
        default=None,
        help="number of processes (default: $JAX_NUM_PROCESSES or the cluster)",
    )
    group.add_argument(
        "--process-id",
        type=int,
        default=None,
        help="this process's index (default: $JAX_PROCESS_ID or the cluster)",
    )


def _run_config(args: argparse.Namespace) -> int:
    from ._assimilate import run_assimilate
    from ._config import load_config
    from ._fit import FitSetup, run_fit
    from ._report import describe
    from ._setup import prepare
    from ._table import ConfigError

    try:
        config = load_config(args.config, out=args.out)
        if args.command == "fit" and config.fit is None:
            raise ConfigError(
                "`assimilax fit` needs a [fit] section (what to learn and how)"
            )
        if args.resume:
            config = config.with_resume()
        experiment = prepare(config)
        if args.distributed:
            experiment = experiment.process_share()
        fit = None if config.fit is None else FitSetup.build(config, experiment)
        mesh = _mesh(args) if args.command == "fit" else None
        if mesh is not None and config.fit.batching != "vmap":
            raise ConfigError(
                f'[fit].batching = "{config.fit.batching}" cannot split a batch '
                'over devices: use "vmap" (the default) with --devices or '
                "--distributed"
            )
        if mesh is not None and fit.batch_size % mesh.size:
            raise ConfigError(
                f"[fit].batch_size = {fit.batch_size} must be a multiple of the "
                f"{mesh.size} devices it is split over"
            )
    except ConfigError as error:
        print(f"assimilax: config error: {error}", file=sys.stderr)
        return 2
    print(f"assimilax {args.command} {args.config}")
    print(describe(experiment))
    if args.command == "check" or args.dry_run:
        if fit is not None:
            print(fit.describe())
        print("config OK")
        return 0
    if args.command == "assimilate":
        return run_assimilate(config, experiment)
    return run_fit(fit, mesh)


def _mesh(args: argparse.Namespace):
    """The device mesh of ``--devices`` / ``--distributed`` (`None`: one device).

    **Raises:** `ConfigError` for a device count that is not there.
    """
    import jax

    from ..learning import data_mesh
    from ._table import ConfigError

    if args.distributed:
        return data_mesh()
    if args.devices is None:
        return None
    available = jax.local_devices()
    if args.devices == "all":
        return data_mesh(available)
    try:
        count = int(args.devices)
    except ValueError:
        count = 0
    if not 1 <= count <= len(available):
        raise ConfigError(
            f"--devices must be 'all' or an int in [1, {len(available)}] (the "
            f"devices here), got {args.devices!r}"
        )
    return data_mesh(available[:count])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``assimilax`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    import jax

    if args.distributed:
        from ..learning import initialize_distributed

        if args.devices not in (None, "all"):
            print(
                "assimilax: config error: --distributed uses every device: drop "
                "--devices",
                file=sys.stderr,
            )
            return 2

        initialize_distributed(args.coordinator, args.num_processes, args.process_id)

    jax.config.update("jax_enable_x64", True)
    if args.compilation_cache is not None:
        from .._compilation_cache import use_compilation_cache

        use_compilation_cache(args.compilation_cache or None)
    if args.command != "demo":
        return _run_config(args)
    from ..demos import DEMOS

    print(f"assimilax demo {args.name}: outputs in {args.out}/", flush=True)
    DEMOS[args.name].main(args.out, args.quick, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
