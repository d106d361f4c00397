"""xarray input and output: Datasets to and from observations and trajectories."""

from ._assimilate import analysis_rmse as analysis_rmse, assimilate as assimilate
from ._cycling import cycle as cycle
from ._cycling_methods import (
    AbstractCyclingMethod as AbstractCyclingMethod,
    FourDVarCycling as FourDVarCycling,
    ThreeDVarCycling as ThreeDVarCycling,
)
from ._cycling_stats import (
    background_error_covariance as background_error_covariance,
    cycling_statistics as cycling_statistics,
)
from ._twin import twin_experiment as twin_experiment
from ._xarray import (
    observations_from_dataset as observations_from_dataset,
    observations_to_dataset as observations_to_dataset,
    trajectory_from_dataset as trajectory_from_dataset,
    trajectory_to_dataset as trajectory_to_dataset,
)
