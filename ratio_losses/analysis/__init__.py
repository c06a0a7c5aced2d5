"""From records to figures and verdicts: a sweep's runs, names, colours and tables (`study`), one plotting function
per paper figure (`figures`), records across machines (`records`), seed statistics (`stats`), the 23 claims
(`claims`), the verdict rule (`verdicts`), the report (`report`) and the paired table of any preset (`compare`)."""

from ..core import require_extra

require_extra('ratio_losses.analysis (figures, statistics, report)', 'experiments', 'analysis')

from .study import *  # noqa: E402,F401,F403
from .figures import *  # noqa: E402,F401,F403
from .compare import *  # noqa: E402,F401,F403

# `from ratio_losses.analysis import *` gives the names above, not the submodules (a notebook's `figures` stays its own)
from . import study as _study, figures as _figures, compare as _compare  # noqa: E402

__all__ = [*_study.__all__, *_figures.__all__, *_compare.__all__]
