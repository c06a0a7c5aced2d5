"""The dataset fixtures of the tests live in the package now (ratio_losses.fixtures, from nbs/10_fixtures.ipynb)."""
from ratio_losses.fixtures import *  # noqa: F401,F403
from ratio_losses.fixtures import _image, _pickle, _idx_bytes, _cars_annos  # noqa: F401
