"""From records to figures and verdicts: a sweep's runs, names, colours and tables (`study`), one plotting function
per paper figure (`figures`), records across machines (`records`), seed statistics (`stats`), the 23 claims
(`claims`), the verdict rule (`verdicts`) and the report (`report`)."""

from ..core import require_extra

require_extra('ratio_losses.analysis (figures, statistics, report)', 'experiments', 'analysis')

from .study import *  # noqa: E402,F401,F403
from .figures import *  # noqa: E402,F401,F403

# `from ratio_losses.analysis import *` gives the names above, not the submodules (a notebook's `figures` stays its own)
from . import study as _study, figures as _figures  # noqa: E402

__all__ = [*_study.__all__, *_figures.__all__]
