"""The command line: ``assimilax demo NAME``, ``assimilate``, ``fit``, ``check``.

    assimilax demo heat               # learn a diffusivity through 4DVar with `fit`
    assimilax demo lorenz96           # cycled 4DVar, a learnt background covariance
    assimilax demo pnp                # a plug-and-play prior: zero-shot, fine-tuned
    assimilax assimilate CONFIG.toml  # the analysis of every window of an experiment
    assimilax fit CONFIG.toml         # learn parameters through the analyses
    assimilax check CONFIG.toml       # check a config without solving anything

Each demo runs on embedded defaults (its data is generated), prints a summary
table and writes a netCDF file and a PNG plot (matplotlib) into ``--out``
(default ``assimilax-output/``). ``assimilate`` and ``fit`` run the experiment a
TOML config describes (schema: ``docs/cli.md``); a bad config is reported as
``assimilax: config error: ...`` with exit status 2. Computations are in
float64.
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
    demo.add_argument("name", choices=sorted(DEMOS), help="which demo")
    demo.add_argument("--out", default="assimilax-output", help="output folder")
    demo.add_argument("--quick", action="store_true", help="a smaller, faster run")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
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
        command.add_argument("config", help="the experiment, a TOML file")
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
    return parser


def _run_config(args: argparse.Namespace) -> int:
    from ._assimilate import run_assimilate
    from ._config import load_config
    from ._fit import FitSetup, run_fit
    from ._report import describe
    from ._setup import prepare
    from ._table import ConfigError

    try:
        config = load_config(args.config, out=getattr(args, "out", None))
        if args.command == "fit" and config.fit is None:
            raise ConfigError(
                "`assimilax fit` needs a [fit] section (what to learn and how)"
            )
        if getattr(args, "resume", False):
            config = config.with_resume()
        experiment = prepare(config)
        fit = None if config.fit is None else FitSetup.build(config, experiment)
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
    return run_fit(fit)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``assimilax`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.command != "demo":
        return _run_config(args)
    from ..demos import DEMOS

    print(f"assimilax demo {args.name}: outputs in {args.out}/", flush=True)
    DEMOS[args.name].main(args.out, args.quick, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
