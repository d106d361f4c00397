"""Demos on embedded defaults (data generated, nothing to download), run by
``assimilax demo NAME``: each module has ``main(out, quick, seed) -> dict``.

- `assimilax.demos.heat`: learn the diffusivity of a heat equation through 4DVar
  with `fit` (`Implicit` and `Unrolled` hypergradients).
- `assimilax.demos.lorenz96`: cycled 4DVar on Lorenz-96 with a background
  covariance learnt from a training cycle.
- `assimilax.demos.model_error`: learn a neural correction of a one-scale
  Lorenz-96 through 4DVar from sparse observations of a two-scale truth.
- `assimilax.demos.sst`: sea-surface temperature under clouds from real OSTIA
  history (optional extra ``assimilax[data]``): climatology, persistence, EOF, OI
  with a background learnt through the argmin, a learned prior zero-shot and
  fine-tuned.
- `assimilax.demos.pnp`: a plug-and-play prior in 4DVar on 2D heat: pretrained on
  historical fields, used zero-shot, then fine-tuned through the argmin, against
  a Tikhonov prior tuned by the bilevel loop.
"""

from . import (
    heat as heat,
    lorenz96 as lorenz96,
    model_error as model_error,
    pnp as pnp,
    sst as sst,
)


DEMOS = {
    "heat": heat,
    "lorenz96": lorenz96,
    "model-error": model_error,
    "pnp": pnp,
    "sst": sst,
}
