"""Learn the diffusivity of a heat equation through 4DVar: bilevel parameter estimation.

The code lives in `assimilax.demos.heat` (``src/assimilax/demos/heat.py``), which
``assimilax demo heat`` also runs: sixteen windows of a 1D heat equation (n=128,
true ``kappa = 0.5``, every 4th point observed every 5 steps, noise 5% of the
signal's std), strong-constraint 4DVar inside, `fit` learning ``log kappa`` from
twice the truth with `Implicit`, `Unrolled` and `GradientFlowAdjoint`
hypergradients. Prints a table and
saves ``heat1d_learn_kappa.png`` and ``heat1d_learn_kappa.nc``.

    python examples/heat1d_learn_kappa.py [--out examples/output] [--quick]
"""

import argparse

import jax


jax.config.update("jax_enable_x64", True)

from assimilax.demos import heat  # noqa: E402


def main(out="examples/output", quick=False, seed=0):
    """Run the demo; returns its printed numbers."""
    return heat.main(out, quick, seed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.quick, args.seed)
