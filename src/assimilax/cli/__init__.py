"""The command line: ``assimilax demo NAME`` (more commands to come).

    assimilax demo heat        # learn a diffusivity through 4DVar with `fit`
    assimilax demo lorenz96    # cycled 4DVar with a learnt background covariance
    assimilax demo heat --quick --out results/ --seed 1

Each demo runs on embedded defaults (its data is generated), prints a summary
table and writes a netCDF file and a PNG plot (matplotlib) into ``--out``
(default ``assimilax-output/``). Computations are in float64.
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``assimilax`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    from ..demos import DEMOS

    if args.command == "demo":
        print(f"assimilax demo {args.name}: outputs in {args.out}/", flush=True)
        DEMOS[args.name].main(args.out, args.quick, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
