"""Observations for data assimilation: operators ``H``, noise ``R``, missing values."""

from ._clouds import cloud_mask as cloud_mask
from ._noise import (
    AbstractNoise as AbstractNoise,
    DiagonalNoise as DiagonalNoise,
    ScalarNoise as ScalarNoise,
)
from ._observations import Observations as Observations
from ._operators import (
    AbstractObservationOperator as AbstractObservationOperator,
    Identity as Identity,
    Linear as Linear,
    Mask as Mask,
    Stations as Stations,
)
