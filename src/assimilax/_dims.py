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

Readers also accept the usual other names of the space dims (`lon`/`longitude`
for `x`, `lat`/`latitude` for `y`, or any name whose coordinate carries the CF
attrs `axis`, `standard_name` or `units` of a longitude/latitude or x/y axis) and
put them in ``(time, x, y)`` order: `space_dim_roles`.

They live at the package root so that every layer that writes or reads these
Datasets (`io`, `assimilation`, `learning`, `plotting`, the command line) shares
them without reaching into a private module of another subpackage.
"""

from collections.abc import Hashable


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

# Other names of the space dims, by lower-case name, then by the CF attrs of the
# dim's coordinate (CF conventions, section 4: "Coordinate Types").
OTHER_NAMES = {"lon": X, "longitude": X, "lat": Y, "latitude": Y}
CF_AXIS = {"X": X, "Y": Y}
CF_STANDARD_NAMES = {
    "longitude": X,
    "grid_longitude": X,
    "projection_x_coordinate": X,
    "latitude": Y,
    "grid_latitude": Y,
    "projection_y_coordinate": Y,
}
CF_UNITS = {"degrees_east": X, "degree_east": X, "degrees_north": Y, "degree_north": Y}


def space_dim_roles(
    da, variable: str, *, skip: tuple[str, ...] = (TIME,)
) -> dict[Hashable, str]:
    """Which of `x`, `y`, `station` each space dim of the DataArray `da` is.

    The space dims are the dims of `da` not in `skip`. `x`, `y` and `station` are
    themselves; another name is placed by `OTHER_NAMES`, else by the CF attrs of
    its coordinate (`axis`, then `standard_name`, then `units`).

    **Returns:** ``{dim: role}`` in the order ``x, y, station`` (the order of the
    axes of our arrays, whatever the order of `da.dims`).

    **Raises:** `ValueError` naming `variable` and its dims when a dim cannot be
    placed, or two dims are placed on the same axis: the message says how to
    rename them (``ds.rename(...)``).
    """
    roles = {}
    unknown = []
    for dim in da.dims:
        if dim in skip:
            continue
        role = _role(da, dim)
        if role is None:
            unknown.append(dim)
        roles[dim] = role
    space = tuple(roles)
    if unknown:
        free = [r for r in (X, Y)[: len(space)] if r not in roles.values()]
        example = dict(zip(unknown, free or [X]))
        raise ValueError(
            f"`ds['{variable}']` has space dims {space}, and assimilax cannot tell "
            f"which axis {tuple(unknown)} is. Rename them: `{X}` is the first axis "
            f"of a state, `{Y}` the second, `{STATION}` the dim of point "
            f"observations; e.g. `ds = ds.rename({example!r})` if that is what they "
            "are. Or give each coordinate a CF `axis` attr ('X' or 'Y'); "
            "`lon`/`longitude` and `lat`/`latitude` are understood."
        )
    for role in (X, Y, STATION):
        same = tuple(dim for dim, r in roles.items() if r == role)
        if len(same) > 1:
            raise ValueError(
                f"`ds['{variable}']` has space dims {space}, of which {same} all "
                f"stand for `{role}` (by name or CF attrs): rename or drop all but "
                f"one, e.g. `ds = ds.rename({{{same[-1]!r}: ...}})`."
            )
    order = (X, Y, STATION)
    return dict(sorted(roles.items(), key=lambda item: order.index(item[1])))


def _role(da, dim: Hashable) -> str | None:
    if dim in (X, Y, STATION):
        return dim
    if isinstance(dim, str) and dim.lower() in OTHER_NAMES:
        return OTHER_NAMES[dim.lower()]
    attrs = da.coords[dim].attrs if dim in da.coords else {}
    for key, table in (
        ("axis", CF_AXIS),
        ("standard_name", CF_STANDARD_NAMES),
        ("units", CF_UNITS),
    ):
        value = attrs.get(key)
        if isinstance(value, str) and value in table:
            return table[value]
    return None
