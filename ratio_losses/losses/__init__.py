"""Every loss in one namespace: the checks and reductions they share (`checks`), the base module and cross-entropy
(`base`), one module per paper (`crl`: CRL, NLLR, CCE; `gce`; `cc`; `msl`), the comparison losses (`comparisons`),
and the registry a run config names them by (`objective`: `register_loss`, `LOSSES`, `FUNCTIONS`)."""

from .checks import *  # noqa: F401,F403
from .base import *  # noqa: F401,F403
from .crl import *  # noqa: F401,F403
from .gce import *  # noqa: F401,F403
from .cc import *  # noqa: F401,F403
from .msl import *  # noqa: F401,F403
from .comparisons import *  # noqa: F401,F403
from .margins import *  # noqa: F401,F403
from .objective import *  # noqa: F401,F403

# `from ratio_losses.losses import *` gives the names above, not the submodules (a notebook's `figures` stays its own)
from . import (
    checks as _checks,
    base as _base,
    crl as _crl,
    gce as _gce,
    cc as _cc,
    msl as _msl,
    comparisons as _comparisons,
    margins as _margins,
    objective as _objective,
)  # noqa: E402

__all__ = [
    *_checks.__all__,
    *_base.__all__,
    *_crl.__all__,
    *_gce.__all__,
    *_cc.__all__,
    *_msl.__all__,
    *_comparisons.__all__,
    *_margins.__all__,
    *_objective.__all__,
]

load_plugins()  # the modules named in $RATIO_LOSSES_PLUGINS register their losses (see objective.load_plugins)
