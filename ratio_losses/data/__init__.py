"""Datasets: the registry of where each dataset's files are (`registry`), its loader in the official layout
(`datasets`; the fine-grained, face-age and ImageNet folders in `folders`), the in-memory batch pipeline
(`loaders`), and tiny copies of each layout for the tests (`fixtures`)."""

from .registry import *  # noqa: F401,F403
from .loaders import *  # noqa: F401,F403
from .datasets import *  # noqa: F401,F403
from .folders import *  # noqa: F401,F403

# `from ratio_losses.data import *` gives the names above, not the submodules (a notebook's `figures` stays its own)
from . import registry as _registry, loaders as _loaders, datasets as _datasets, folders as _folders  # noqa: E402

__all__ = [*_registry.__all__, *_loaders.__all__, *_datasets.__all__, *_folders.__all__]
