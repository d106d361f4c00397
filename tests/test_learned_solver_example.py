"""`examples/learned_solver_heat2d.py` runs (quick settings) and its learned solvers
beat gradient descent with the same number of steps on held-out windows."""

import numpy as np
import pytest

from scripts import load_example


# About two minutes on two CPU cores (two trainings through the unrolled solves).
@pytest.mark.slow
def test_example_runs_and_learned_beats_gradient_descent(tmp_path):
    numbers = load_example("learned_solver_heat2d").main(out=tmp_path, quick=True)
    for scheme in ("joint", "solver only"):
        rows = {row[0]: row for row in numbers[scheme]}
        descent, learned = rows["gradient descent"][2], rows["learned"][2]
        assert np.isfinite(learned) and learned < descent, (scheme, rows)
        assert learned < numbers["background"]
