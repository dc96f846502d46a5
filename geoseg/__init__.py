"""geoseg: hierarchical land-cover segmentation of large GeoTIFF scenes.

The package is a library: functions take paths and parameters and return values.
:mod:`geoseg.api` is its public face: the commands' jobs as functions, and a model
that labels arrays in memory.
Importing it creates no global state beyond a ``NullHandler`` on the package logger,
and it does not import torch; the modules that need torch import it themselves.
"""

import logging

from geoseg._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
