"""Forecast models as Equinox modules (parameters are fields) and their integration."""

from ._advection_diffusion import AdvectionDiffusion1D as AdvectionDiffusion1D
from ._base import (
    AbstractDynamics as AbstractDynamics,
    AbstractODEDynamics as AbstractODEDynamics,
)
from ._boundary import (
    AbstractBoundary as AbstractBoundary,
    Dirichlet as Dirichlet,
    Periodic as Periodic,
)
from ._corrected import CorrectedDynamics as CorrectedDynamics
from ._corrections import (
    LinearCorrection as LinearCorrection,
    LocalConvCorrection as LocalConvCorrection,
)
from ._custom import VectorFieldDynamics as VectorFieldDynamics
from ._discrete import DiscreteDynamics as DiscreteDynamics
from ._fixed_step import FixedStepRK4 as FixedStepRK4
from ._heat import AbstractHeat as AbstractHeat, Heat1D as Heat1D, Heat2D as Heat2D
from ._integrator import (
    AbstractIntegrator as AbstractIntegrator,
    ExactFlow as ExactFlow,
    Integrator as Integrator,
    RK4 as RK4,
)
from ._lorenz63 import Lorenz63 as Lorenz63
from ._lorenz96 import Lorenz96 as Lorenz96
from ._two_scale_lorenz96 import TwoScaleLorenz96 as TwoScaleLorenz96
