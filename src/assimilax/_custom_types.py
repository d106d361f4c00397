"""Type aliases and the glossary of shape names used across assimilax.

Shape names (in jaxtyping strings):

- ``"state"``: the flattened size of the inner variable ``x``;
- ``"time"``: time steps of a trajectory;
- ``"obs"``: observed values;
- ``"*batch"``: any leading batch dimensions (windows, ensemble members).
"""

from collections.abc import Callable
from typing import Any, TypeAlias

from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree


# The inner variable and the parameters are arbitrary pytrees of floating arrays.
X: TypeAlias = PyTree[Array]
Args: TypeAlias = PyTree[Any]
Scalar: TypeAlias = Float[Array, ""]
ScalarLike: TypeAlias = float | Float[ArrayLike, ""]
BoolScalar: TypeAlias = Bool[Array, ""]
IntScalar: TypeAlias = Int[Array, ""]
# The inner objective ``fn(x, args) -> scalar``.
Objective: TypeAlias = Callable[[X, Args], Scalar]

__all__ = [
    "Args",
    "BoolScalar",
    "IntScalar",
    "Objective",
    "Scalar",
    "ScalarLike",
    "X",
]
