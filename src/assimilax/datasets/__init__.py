"""Real gridded history for pretraining and testing, from installable packages.

Nothing is downloaded at run time and nothing is copied into this repository: each
loader reads a file shipped by a package on the Python package index (an optional
extra, ``pip install 'assimilax[data]'``) and returns an `xarray.Dataset` with CF
attributes and the data's licence and attribution in its attrs.
"""

from ._ostia import ostia_sst as ostia_sst
