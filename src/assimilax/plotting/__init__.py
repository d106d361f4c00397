"""Plots of twin experiments, analyses and learning (matplotlib, imported lazily)."""

from ._cycling import cycling_rmse as cycling_rmse
from ._fields import snapshot as snapshot
from ._fit_history import fit_history as fit_history
from ._hovmoller import hovmoller as hovmoller
from ._hypergradient_error import hypergradient_error as hypergradient_error
from ._timeseries import timeseries as timeseries
