"""One run, start to end: its config and run id (`config`), its data (`run_data`), the training loop (`loop`),
`run_training` (`train`), and what a run writes: metrics, checkpoints, records, the results table, artifacts."""

from ..core import require_extra

require_extra('ratio_losses.training (run_training, the trainer)', 'experiments')

from .config import *  # noqa: E402,F401,F403
from .schedules import *  # noqa: E402,F401,F403
from .metrics import *  # noqa: E402,F401,F403
from .checkpoints import *  # noqa: E402,F401,F403
from .results_table import *  # noqa: E402,F401,F403
from .run_data import *  # noqa: E402,F401,F403
from .artifacts import *  # noqa: E402,F401,F403
from .distributed import *  # noqa: E402,F401,F403
from .loop import *  # noqa: E402,F401,F403
from .train import *  # noqa: E402,F401,F403

# `from ratio_losses.training import *` gives the names above, not the submodules (a notebook's `figures` stays its own)
from . import (
    config as _config,
    schedules as _schedules,
    metrics as _metrics,
    checkpoints as _checkpoints,
    results_table as _results_table,
    run_data as _run_data,
    artifacts as _artifacts,
    distributed as _distributed,
    loop as _loop,
    train as _train,
)  # noqa: E402

__all__ = [
    *_config.__all__,
    *_schedules.__all__,
    *_metrics.__all__,
    *_checkpoints.__all__,
    *_results_table.__all__,
    *_run_data.__all__,
    *_artifacts.__all__,
    *_distributed.__all__,
    *_loop.__all__,
    *_train.__all__,
]
