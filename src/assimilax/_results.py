"""Result codes of an `argmin` solve: failure is data, an error on request."""

import optimistix as optx


class RESULTS(optx.RESULTS):  # pyright: ignore
    """Outcome of an inner solve (extends `optimistix.RESULTS` and `lineax.RESULTS`).

    Use `RESULTS[sol.result]` for the message of a result code.
    """

    inner_max_steps = (
        "The inner solver reached `max_steps` before its convergence test held "
        "(gradient or fixed-point residual <= atol + rtol * initial residual). "
        "Increase the solver's `max_steps`, loosen `rtol`/`atol`, or pass "
        "`throw=False` and inspect `sol.stats`."
    )
    inner_nonfinite = (
        "The inner solve produced NaN or inf (in the iterate, the objective or the "
        "residual). Check the objective (or the map) at `x0`, and reduce the "
        "solver's step size (or its damping)."
    )
    linear_solve_failed = (
        "The backward linear solve of the implicit hypergradient did not converge "
        "(the Hessian at the inner solution may be singular or badly conditioned). "
        "Solve the inner problem more accurately, add `damping=` to `Implicit`, "
        "raise the linear solver's `max_steps`, or use a preconditioner."
    )
