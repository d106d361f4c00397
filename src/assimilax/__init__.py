"""assimilax: variational data assimilation inside bilevel learning, in JAX.

The top level holds the day-to-day names (`argmin`, the strategies and solvers,
the variational problems, `assimilate`, `cycle`, `fit`); the options of the
engine (Hessian products, preconditioners, proximal terms, solver states) are in
`assimilax.bilevel`, and each layer's full API in its subpackage.
"""

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
from ._compilation_cache import use_compilation_cache as use_compilation_cache
from ._progress import (
    AbstractProgress as AbstractProgress,
    NoProgress as NoProgress,
    TqdmProgress as TqdmProgress,
)
from ._results import RESULTS as RESULTS
from .assimilation import (
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
    AbstractHypergradient as AbstractHypergradient,
    AbstractInnerSolver as AbstractInnerSolver,
    AbstractProblem as AbstractProblem,
    AbstractRootSolver as AbstractRootSolver,
    Anderson as Anderson,
    argmin as argmin,
    DEQ as DEQ,
    FiniteDifference as FiniteDifference,
    fixed_point as fixed_point,
    FixedPointIteration as FixedPointIteration,
    ForwardMode as ForwardMode,
    GaussNewton as GaussNewton,
    GradientDescent as GradientDescent,
    GradientFlow as GradientFlow,
    GradientFlowAdjoint as GradientFlowAdjoint,
    Implicit as Implicit,
    LBFGS as LBFGS,
    Newton as Newton,
    OptaxSolver as OptaxSolver,
    OuterState as OuterState,
    PrimalDual as PrimalDual,
    ProximalGradient as ProximalGradient,
    root_find as root_find,
    Solution as Solution,
    Stats as Stats,
    Truncated as Truncated,
    Unrolled as Unrolled,
    value_and_hypergrad as value_and_hypergrad,
)
from .costs import (
    StrongConstraint4DVar as StrongConstraint4DVar,
    ThreeDVar as ThreeDVar,
    WeakConstraint4DVar as WeakConstraint4DVar,
)
from .learning import fit as fit, FitResult as FitResult


__version__ = importlib.metadata.version("assimilax")
