"""xarray input and output: Datasets to and from observations and trajectories,
and twin experiments."""

from ._twin import twin_experiment as twin_experiment
from ._xarray import (
    observations_from_dataset as observations_from_dataset,
    observations_to_dataset as observations_to_dataset,
    trajectory_from_dataset as trajectory_from_dataset,
    trajectory_to_dataset as trajectory_to_dataset,
)
