"""One outer step of `fit`: hypergradients of a batch of windows, and the update.

Per window, the problem is built from the parameters (``problem_fn(params,
window)``), its inner solve is warm-started from the window's `OuterState`, and
`value_and_hypergrad` gives the outer loss and its gradient with respect to the
problem's leaves; the VJP of ``problem_fn`` carries it back to the parameters,
plus the direct dependence of the outer loss on them. The batch is solved as
`config.batching` says (`Vectorised`: a `vmap`; `Sequential`: a `lax.map`).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax
from jax.sharding import Mesh, NamedSharding
from jaxtyping import Array, PyTree

from .._promotion import optax_promotion
from .._results import RESULTS
from .._structure import by_structure
from ..bilevel import (
    AbstractHypergradient,
    AbstractInnerSolver,
    argmin,
    OuterState,
    value_and_hypergrad,
)
from ..bilevel._iterate import stop_gradient_tree
from ..bilevel._outer_state import tree_add
from ..bilevel._problem import AbstractProblem, check_problem
from ._options import AbstractBatching, Vectorised
from ._sharding import BATCH


class StepConfig(eqx.Module):
    """What stays fixed over a run (static under `jit`).

    The functions and the optimiser are compared by structure (`by_structure`):
    freshly built but equal ones reuse the compiled programs.
    """

    problem_fn: Callable = eqx.field(static=True, converter=by_structure)
    outer_loss: Callable = eqx.field(static=True, converter=by_structure)
    optimiser: optax.GradientTransformation = eqx.field(
        static=True, converter=by_structure
    )
    solver: AbstractInnerSolver
    hypergradient: AbstractHypergradient
    # Split each batch over this mesh's `data` axis (`_sharding`); `None`: one device.
    mesh: Mesh | None = eqx.field(static=True, default=None)
    batching: AbstractBatching = Vectorised()


def _cost(control, problem):
    return problem.cost(control)


def _build(config: StepConfig, params, window) -> AbstractProblem:
    problem = config.problem_fn(params, window)
    check_problem("fit(problem_fn=...) returned a problem that is not one", problem)
    return problem


def _one_window(config: StepConfig, trainable, static, window, state):
    def build(t):
        return _build(config, eqx.combine(t, static), window)

    problem, pullback = eqx.filter_vjp(build, trainable)
    params = stop_gradient_tree(eqx.combine(trainable, static))

    def loss_on(control, problem):
        return config.outer_loss(problem.to_state(control), params, window)

    loss, problem_grads, new_state, info = value_and_hypergrad(
        loss_on,
        _cost,
        problem.first_guess(),
        problem,
        solver=config.solver,
        hypergradient=config.hypergradient,
        state=state,
        throw=False,
    )
    (grads,) = pullback(problem_grads)
    # The outer loss may also depend on the parameters directly (e.g. a penalty).
    analysis = stop_gradient_tree(problem.to_state(new_state.x))
    direct = eqx.filter_grad(
        lambda t: config.outer_loss(analysis, eqx.combine(t, static), window)
    )(trainable)
    grads = tree_add(grads, direct)
    linear_steps = (
        jnp.asarray(jnp.nan)
        if info.linear is None
        else jnp.asarray(info.linear.num_steps, dtype=float)
    )
    diagnostics = {
        "inner_steps": info.inner.num_steps,
        "inner_failed": info.result != RESULTS.successful,
        "linear_steps": linear_steps,
    }
    return loss, grads, new_state, diagnostics


def _sum(tree):
    return jtu.tree_map(lambda a: jnp.sum(a, axis=0), tree)


def _batch_sums(config: StepConfig, trainable, static, windows, states):
    """Sums over a batch of windows (loss, hypergradients, diagnostics), and
    each window's new warm-start state."""

    def one(window, state):
        return _one_window(config, trainable, static, window, state)

    losses, grads, new_states, diagnostics = config.batching.map(one, windows, states)
    sums = {
        "loss": jnp.sum(losses),
        "grads": _sum(grads),
        "inner_steps": jnp.sum(jnp.asarray(diagnostics["inner_steps"], dtype=float)),
        "inner_failures": jnp.sum(diagnostics["inner_failed"]),
        "linear_steps": jnp.sum(diagnostics["linear_steps"]),
    }
    return sums, new_states


def _split(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every array of `tree` split along its leading (window) axis over `mesh`."""
    split = NamedSharding(mesh, BATCH)
    return jtu.tree_map(lambda a: jax.lax.with_sharding_constraint(a, split), tree)


def _sharded_batch_sums(config: StepConfig, trainable, static, windows, states):
    """`_batch_sums` with the batch split over the devices of `config.mesh`."""
    windows, states = _split((windows, states), config.mesh)
    sums, new_states = _batch_sums(config, trainable, static, windows, states)
    return sums, _split(new_states, config.mesh)


def _all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jtu.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _global_norm(tree) -> Array:
    leaves = jtu.tree_leaves(tree)
    if not leaves:
        return jnp.asarray(0.0)
    # Parameters may mix precisions (a float32 network and a float64 weight): sum
    # the squares in the widest dtype, which strict promotion would not pick.
    dtype = max((leaf.dtype for leaf in leaves), key=lambda d: d.itemsize)
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf.astype(dtype))) for leaf in leaves))


@eqx.filter_jit
def train_step(config: StepConfig, trainable, static, opt_state, windows, states):
    """One outer step on a batch; the update is skipped when anything is not finite.

    **Returns:** ``(trainable, opt_state, states, record)`` where `record` holds
    the batch-mean loss, the gradient norm, `finite`, and the inner/linear solve
    diagnostics.
    """

    size = jtu.tree_leaves(windows)[0].shape[0]
    batch_sums = _batch_sums if config.mesh is None else _sharded_batch_sums
    sums, new_states = batch_sums(config, trainable, static, windows, states)
    loss = sums["loss"] / size
    grads = jtu.tree_map(lambda g: g / size, sums["grads"])
    finite = jnp.isfinite(loss) & _all_finite(grads)
    with optax_promotion():
        updates, new_opt_state = config.optimiser.update(grads, opt_state, trainable)
    new_trainable = eqx.apply_updates(trainable, updates)

    def keep_if_finite(new, old):
        return jtu.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)

    record = {
        "loss": loss,
        "grad_norm": _global_norm(grads),
        "finite": finite,
        "inner_steps": sums["inner_steps"] / size,
        "inner_failures": sums["inner_failures"],
        "linear_steps": sums["linear_steps"] / size,
    }
    return (
        keep_if_finite(new_trainable, trainable),
        keep_if_finite(new_opt_state, opt_state),
        None if states is None else keep_if_finite(new_states, states),
        record,
    )


def scalar_leaves(trainable: PyTree) -> dict[str, Array]:
    """Trainable scalar parameters by name (their key path), for the history."""
    named = {}
    for path, leaf in jtu.tree_flatten_with_path(trainable)[0]:
        if eqx.is_array(leaf) and leaf.size == 1:
            name = jtu.keystr(path).strip(".").replace("']['", ".")
            name = name.replace("['", "").replace("']", "").replace("[", ".")
            name = name.replace("]", "").replace(".", "_").strip("_") or "value"
            # reshape: size-1 arrays of any rank, e.g. the (1,) bias of an
            # `eqx.nn.MLP` with a scalar output (`float` needs rank 0).
            named[f"params.{name}"] = leaf.reshape(())
    return named


@eqx.filter_jit
def indexed_train_step(
    config: StepConfig, trainable, static, opt_state, windows, states, index
):
    """`train_step` on the windows at `index` (shape ``(batch,)``) of all the
    training `windows`, with the batch's new warm starts written back into
    `states` (all windows'), in one program: no per-step work on the host but
    the call. The record also holds the trainable scalars before the update
    (``params.NAME``).

    **Returns:** ``(trainable, opt_state, states, record)``.
    """
    batch_windows = jtu.tree_map(lambda a: a[index], windows)
    batch_states = None if states is None else jtu.tree_map(lambda a: a[index], states)
    new_trainable, new_opt_state, new_states, record = train_step(
        config, trainable, static, opt_state, batch_windows, batch_states
    )
    if states is not None:
        states = jtu.tree_map(lambda a, new: a.at[index].set(new), states, new_states)
    return new_trainable, new_opt_state, states, {**record, **scalar_leaves(trainable)}


def _solve(config: StepConfig, params, window):
    # The strategy's own forward solve (e.g. `GradientFlowAdjoint`'s adaptive
    # `diffeqsolve`), so that cold solves compute what the training steps do.
    problem = _build(config, params, window)
    sol = argmin(
        _cost,
        problem.first_guess(),
        problem,
        solver=config.solver,
        hypergradient=config.hypergradient,
        throw=False,
    )
    return problem, sol


def _per_window(config: StepConfig, fn: Callable, params, windows):
    """``fn(params, window)`` for every window (`config.batching`), split over the
    devices of `config.mesh` when there is one."""

    def one(window):
        return fn(params, window)

    if config.mesh is None:
        return config.batching.map(one, windows)
    windows = _split(windows, config.mesh)
    return _split(config.batching.map(one, windows), config.mesh)


@eqx.filter_jit
def initial_states(config: StepConfig, params, windows) -> tuple[OuterState, dict]:
    """The warm-start state of every window (the strategy's
    `init_outer_state` after a cold solve at `params`), and per window the
    solve's `inner_steps` and whether it failed (`inner_failed`)."""

    def one(params, window):
        _, sol = _solve(config, params, window)
        state = config.hypergradient.init_outer_state(sol.value, sol.stats)
        diagnostics = {
            "inner_steps": sol.stats.num_steps,
            "inner_failed": sol.result != RESULTS.successful,
        }
        return state, diagnostics

    return _per_window(config, one, params, windows)


@eqx.filter_jit
def evaluate(config: StepConfig, params, windows) -> tuple[Array, Array]:
    """Per window, the outer loss and whether the inner solve converged (cold
    inner solves, no gradient): two arrays of shape ``(num_windows,)``."""

    def one(params, window):
        problem, sol = _solve(config, params, window)
        loss = config.outer_loss(problem.to_state(sol.value), params, window)
        return loss, sol.result == RESULTS.successful

    return _per_window(config, one, params, windows)
