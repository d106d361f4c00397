"""Prior terms: Gaussian backgrounds, Tikhonov penalties, proximable priors."""

from ._base import (
    AbstractPrior as AbstractPrior,
    AbstractProximablePrior as AbstractProximablePrior,
)
from ._conv_autoencoders import (
    ConvAutoencoder1D as ConvAutoencoder1D,
    ConvAutoencoder2D as ConvAutoencoder2D,
)
from ._conv_denoisers import (
    ConvDenoiser1D as ConvDenoiser1D,
    ConvDenoiser2D as ConvDenoiser2D,
)
from ._covariance import CovarianceBackground as CovarianceBackground
from ._diffusion import DiffusionBackground as DiffusionBackground
from ._eof import EOFBasis as EOFBasis
from ._gaussian import (
    AbstractBackground as AbstractBackground,
    DiagonalBackground as DiagonalBackground,
)
from ._learned import DenoiserPrior as DenoiserPrior, EnergyPrior as EnergyPrior
from ._networks import (
    MLPAutoencoder as MLPAutoencoder,
    Precision as Precision,
    Standardised as Standardised,
)
from ._proximal import ProxPrior as ProxPrior
from ._tikhonov import Tikhonov as Tikhonov
