"""Names of dimensions, variables and attributes in assimilax Datasets.

The conventions (also in the docs of `observations_from_dataset`):

- dims: `time` first, then the space dims, `x` on a 1D grid and `x, y` on a 2D
  grid (arrays are ``(time, x, y)`` in that order); observations that do not live
  on the grid (`Stations`, `Linear`) use one dim `station`.
- coordinates: `time` (model time, float) and optionally `x`, `y`, each with
  CF-style `long_name` and `units` attrs.
- variables: `obs` (observations, NaN = missing), `state` (a trajectory) and
  `truth` (the true states of a twin experiment), with `long_name` (and `units`
  where known) attrs.

They live at the package root so that every layer that writes or reads these
Datasets (`io`, `assimilation`, `learning`, `plotting`, the command line) shares
them without reaching into a private module of another subpackage.
"""

TIME = "time"
X = "x"
Y = "y"
STATION = "station"
# Space dims by the number of grid dimensions.
SPACE_DIMS = {1: (X,), 2: (X, Y)}

OBS = "obs"
STATE = "state"
TRUTH = "truth"

# Attrs given to what we create when the caller supplies none. "1" is the CF unit
# of a dimensionless quantity (model time of Lorenz systems, non-dimensional PDEs).
TIME_ATTRS = {"long_name": "time", "units": "1"}
OBS_ATTRS = {"long_name": "observations"}
STATE_ATTRS = {"long_name": "model state"}
TRUTH_ATTRS = {"long_name": "true state"}
