"""A plug-and-play prior in 4DVar: pretrained on history, zero-shot, fine-tuned.

The code lives in `assimilax.demos.pnp` (``src/assimilax/demos/pnp.py``), which
``assimilax demo pnp`` also runs: 2D heat (32x32, states made of Gaussian blobs),
15% of the grid observed at two times with noise 0.05. A `ConvDenoiser2D` is
pretrained on 3000 historical fields; on 32 held-out windows the example prints
the analysis RMSE with no prior, with a Tikhonov prior whose weight `fit` learnt,
with the pretrained network used zero-shot in an `EnergyPrior`, and after
fine-tuning the network end to end through the argmin with `fit`. Saves
``pnp_heat2d.png`` and ``pnp_heat2d.nc``. About 4.5 minutes on two shared CPU
cores (``--quick``: 1.5).

    python examples/plug_and_play_heat2d.py [--out examples/output] [--quick]
"""

import argparse

import jax


jax.config.update("jax_enable_x64", True)

from assimilax.demos import pnp  # noqa: E402


def main(out="examples/output", quick=False, seed=0):
    """Run the demo; returns its printed numbers."""
    return pnp.main(out, quick, seed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.quick, args.seed)
