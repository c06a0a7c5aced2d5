"""Many runs: presets expanded into points (`presets`), where they run (`launcher`), run through submitit executors
(`executors`) by workers that keep a Jupyter kernel (`kernels`) and share a queue of points (`point_queue`), a lock per
point so that it runs in one place (`locks`), the sweep itself (`sweep`) and the smoke run of every paper-scale point
(`smoke`)."""

from ..core import require_extra

require_extra('ratio_losses.sweeps (presets, sweeps through papermill)', 'experiments')

from .presets import *  # noqa: E402,F401,F403
from .launcher import *  # noqa: E402,F401,F403
from .locks import *  # noqa: E402,F401,F403
from .executors import *  # noqa: E402,F401,F403
from .sweep import *  # noqa: E402,F401,F403
from .smoke import *  # noqa: E402,F401,F403

# `from ratio_losses.sweeps import *` gives the names above, not the submodules (a notebook's `figures` stays its own)
from . import (
    presets as _presets,
    launcher as _launcher,
    locks as _locks,
    executors as _executors,
    sweep as _sweep,
    smoke as _smoke,
)  # noqa: E402

__all__ = [
    *_presets.__all__,
    *_launcher.__all__,
    *_locks.__all__,
    *_executors.__all__,
    *_sweep.__all__,
    *_smoke.__all__,
]
