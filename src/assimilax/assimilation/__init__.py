"""Assimilation drivers: one window (`assimilate`) or a cycle of windows
(`cycle`) with its methods, background covariance models, window schemes and
DAPPER-style statistics."""

from ._assimilate import analysis_rmse as analysis_rmse, assimilate as assimilate
from ._covariances import (
    AbstractBackgroundCovariance as AbstractBackgroundCovariance,
    CycledB as CycledB,
    StaticB as StaticB,
)
from ._cycling import cycle as cycle
from ._cycling_methods import (
    AbstractCyclingMethod as AbstractCyclingMethod,
    ThreeDVarCycling as ThreeDVarCycling,
)
from ._cycling_stats import (
    background_error_covariance as background_error_covariance,
    cycling_statistics as cycling_statistics,
)
from ._fourdvar_cycling import FourDVarCycling as FourDVarCycling
from ._windows import (
    AbstractWindowScheme as AbstractWindowScheme,
    MDA as MDA,
    SDA as SDA,
)
