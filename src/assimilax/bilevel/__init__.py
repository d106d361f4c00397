"""Layer 1: the bilevel engine (`argmin` with selectable hypergradients).

No data-assimilation knowledge: usable for any objective ``fn(x, args)``.
"""

from ._argmin import argmin as argmin
from ._deq import DEQ as DEQ
from ._hvp import (
    AbstractHVP as AbstractHVP,
    AutodiffHVP as AutodiffHVP,
    FiniteDifferenceHVP as FiniteDifferenceHVP,
)
from ._hypergradients._base import AbstractHypergradient as AbstractHypergradient
from ._hypergradients._finite_difference import FiniteDifference as FiniteDifference
from ._hypergradients._forward_mode import ForwardMode as ForwardMode
from ._hypergradients._gradient_flow_adjoint import (
    GradientFlowAdjoint as GradientFlowAdjoint,
)
from ._hypergradients._implicit import Implicit as Implicit
from ._hypergradients._truncated import Truncated as Truncated
from ._hypergradients._unrolled import Unrolled as Unrolled
from ._neumann import Neumann as Neumann
from ._outer_state import HypergradInfo as HypergradInfo, OuterState as OuterState
from ._preconditioners import (
    AbstractPreconditioner as AbstractPreconditioner,
    LBFGSPreconditioner as LBFGSPreconditioner,
    NoPreconditioner as NoPreconditioner,
    OperatorPreconditioner as OperatorPreconditioner,
)
from ._problem import AbstractProblem as AbstractProblem
from ._root_find import fixed_point as fixed_point, root_find as root_find
from ._solution import (
    LinearSolveInfo as LinearSolveInfo,
    Solution as Solution,
    Stats as Stats,
)
from ._solvers._anderson import Anderson as Anderson
from ._solvers._base import (
    AbstractInnerSolver as AbstractInnerSolver,
    InnerState as InnerState,
)
from ._solvers._fixed_point_iteration import (
    FixedPointIteration as FixedPointIteration,
)
from ._solvers._gauss_newton import GaussNewton as GaussNewton
from ._solvers._gradient_descent import GradientDescent as GradientDescent
from ._solvers._gradient_flow import GradientFlow as GradientFlow
from ._solvers._lbfgs import LBFGS as LBFGS
from ._solvers._linesearch import (
    AbstractLineSearch as AbstractLineSearch,
    BacktrackingLineSearch as BacktrackingLineSearch,
)
from ._solvers._newton import Newton as Newton
from ._solvers._optax import OptaxSolver as OptaxSolver
from ._solvers._primal_dual import PrimalDual as PrimalDual
from ._solvers._prox import (
    AbstractProx as AbstractProx,
    Box as Box,
    L1 as L1,
    L2Ball as L2Ball,
    NonNegative as NonNegative,
    TotalVariation1D as TotalVariation1D,
    Zero as Zero,
)
from ._solvers._proximal import ProximalGradient as ProximalGradient
from ._solvers._root import AbstractRootSolver as AbstractRootSolver
from ._value_and_hypergrad import value_and_hypergrad as value_and_hypergrad
