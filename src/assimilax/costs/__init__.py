"""Variational problems: 3DVar, strong- and weak-constraint 4DVar."""

from ._base import (
    AbstractVariationalProblem as AbstractVariationalProblem,
    ProblemProx as ProblemProx,
)
from ._control import (
    AbstractControl as AbstractControl,
    ControlVariable as ControlVariable,
    DirectControl as DirectControl,
)
from ._fourdvar import (
    StrongConstraint4DVar as StrongConstraint4DVar,
    WeakConstraint4DVar as WeakConstraint4DVar,
)
from ._preconditioner import BackgroundPreconditioner as BackgroundPreconditioner
from ._threedvar import ThreeDVar as ThreeDVar
