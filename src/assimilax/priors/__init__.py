"""Prior terms: Gaussian backgrounds, Tikhonov penalties, proximable priors."""

from ._base import (
    AbstractPrior as AbstractPrior,
    AbstractProximablePrior as AbstractProximablePrior,
)
from ._diffusion import DiffusionBackground as DiffusionBackground
from ._gaussian import (
    AbstractBackground as AbstractBackground,
    DiagonalBackground as DiagonalBackground,
)
from ._proximal import ProxPrior as ProxPrior
from ._tikhonov import Tikhonov as Tikhonov
