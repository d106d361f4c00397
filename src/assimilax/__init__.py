"""assimilax: variational data assimilation inside bilevel learning, in JAX."""

import importlib.metadata

from . import (
    assimilation as assimilation,
    bilevel as bilevel,
    costs as costs,
    dynamics as dynamics,
    io as io,
    learning as learning,
    observations as observations,
    plotting as plotting,
    priors as priors,
)
from ._progress import (
    AbstractProgress as AbstractProgress,
    NoProgress as NoProgress,
    TqdmProgress as TqdmProgress,
)
from ._results import RESULTS as RESULTS
from .assimilation import (
    AbstractBackgroundCovariance as AbstractBackgroundCovariance,
    AbstractWindowScheme as AbstractWindowScheme,
    assimilate as assimilate,
    cycle as cycle,
    CycledB as CycledB,
    FourDVarCycling as FourDVarCycling,
    MDA as MDA,
    SDA as SDA,
    StaticB as StaticB,
    ThreeDVarCycling as ThreeDVarCycling,
)
from .bilevel import (
    AbstractHVP as AbstractHVP,
    AbstractHypergradient as AbstractHypergradient,
    AbstractInnerSolver as AbstractInnerSolver,
    AbstractPreconditioner as AbstractPreconditioner,
    AbstractProblem as AbstractProblem,
    AbstractProx as AbstractProx,
    argmin as argmin,
    AutodiffHVP as AutodiffHVP,
    Box as Box,
    FiniteDifference as FiniteDifference,
    FiniteDifferenceHVP as FiniteDifferenceHVP,
    ForwardMode as ForwardMode,
    GaussNewton as GaussNewton,
    GradientDescent as GradientDescent,
    GradientFlow as GradientFlow,
    GradientFlowAdjoint as GradientFlowAdjoint,
    HypergradInfo as HypergradInfo,
    Implicit as Implicit,
    InnerState as InnerState,
    L1 as L1,
    L2Ball as L2Ball,
    LBFGS as LBFGS,
    LBFGSPreconditioner as LBFGSPreconditioner,
    LinearSolveInfo as LinearSolveInfo,
    Neumann as Neumann,
    NonNegative as NonNegative,
    NoPreconditioner as NoPreconditioner,
    OperatorPreconditioner as OperatorPreconditioner,
    OptaxSolver as OptaxSolver,
    OuterState as OuterState,
    PrimalDual as PrimalDual,
    ProximalGradient as ProximalGradient,
    Solution as Solution,
    Stats as Stats,
    TotalVariation1D as TotalVariation1D,
    Truncated as Truncated,
    Unrolled as Unrolled,
    value_and_hypergrad as value_and_hypergrad,
    Zero as Zero,
)


__version__ = importlib.metadata.version("assimilax")
