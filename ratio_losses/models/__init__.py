"""The papers' networks: the backbones (`backbones`), the heads that sit on them (`heads`), and `build_model`, which
joins one to the other by name (`build`)."""

from .backbones import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .build import *  # noqa: F401,F403

# `from ratio_losses.models import *` gives the names above, not the submodules (a notebook's `figures` stays its own)
from . import backbones as _backbones, heads as _heads, build as _build  # noqa: E402

__all__ = [*_backbones.__all__, *_heads.__all__, *_build.__all__]
