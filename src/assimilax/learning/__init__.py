"""The learning layer: outer loops through the argmin, learned priors' pretraining,
learned solvers."""

from ._conv_lstm import (
    AbstractConvLSTMCell as AbstractConvLSTMCell,
    ConvLSTMCell1D as ConvLSTMCell1D,
    ConvLSTMCell2D as ConvLSTMCell2D,
    ConvLSTMModulator as ConvLSTMModulator,
)
from ._evaluate import evaluate_outer_loss as evaluate_outer_loss
from ._fit import fit as fit, FitResult as FitResult
from ._learned_gradient import (
    LearnedGradientSolver as LearnedGradientSolver,
    train_learned_gradient_solver as train_learned_gradient_solver,
)
from ._learned_solver import LearnedGradientDescent as LearnedGradientDescent
from ._lista import (
    ista_iterates as ista_iterates,
    LISTA as LISTA,
    train_lista as train_lista,
)
from ._options import (
    AbstractBatching as AbstractBatching,
    AbstractCheckpointing as AbstractCheckpointing,
    AbstractWarmStart as AbstractWarmStart,
    Checkpoints as Checkpoints,
    ColdStart as ColdStart,
    NoCheckpoints as NoCheckpoints,
    Sequential as Sequential,
    StrategyDefault as StrategyDefault,
    Vectorised as Vectorised,
    WarmStart as WarmStart,
)
from ._pretrain import (
    AbstractPretrainingObjective as AbstractPretrainingObjective,
    Autoencoding as Autoencoding,
    Denoising as Denoising,
    pretrain_prior as pretrain_prior,
)
from ._sharding import (
    data_mesh as data_mesh,
    initialize_distributed as initialize_distributed,
    process_shard as process_shard,
)
from ._train_learned_solver import train_learned_solver as train_learned_solver
