"""assimilax: variational data assimilation inside bilevel learning, in JAX."""

import importlib.metadata

from ._results import RESULTS as RESULTS
from .bilevel import (
    AbstractHVP as AbstractHVP,
    AbstractHypergradient as AbstractHypergradient,
    AbstractInnerSolver as AbstractInnerSolver,
    AbstractPreconditioner as AbstractPreconditioner,
    argmin as argmin,
    AutodiffHVP as AutodiffHVP,
    FiniteDifference as FiniteDifference,
    FiniteDifferenceHVP as FiniteDifferenceHVP,
    ForwardMode as ForwardMode,
    GradientDescent as GradientDescent,
    HypergradInfo as HypergradInfo,
    Implicit as Implicit,
    InnerState as InnerState,
    LBFGSPreconditioner as LBFGSPreconditioner,
    LinearSolveInfo as LinearSolveInfo,
    Neumann as Neumann,
    NoPreconditioner as NoPreconditioner,
    OperatorPreconditioner as OperatorPreconditioner,
    OuterState as OuterState,
    Solution as Solution,
    Stats as Stats,
    Truncated as Truncated,
    Unrolled as Unrolled,
    value_and_hypergrad as value_and_hypergrad,
)


__version__ = importlib.metadata.version("assimilax")
