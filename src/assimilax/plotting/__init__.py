"""Plots of twin experiments and analyses (matplotlib, imported lazily)."""

from ._fields import snapshot as snapshot
from ._hovmoller import hovmoller as hovmoller
from ._timeseries import timeseries as timeseries
