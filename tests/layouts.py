"""The dataset fixtures of the tests live in the package now (ratio_losses.data.fixtures, from nbs/01d_data.fixtures.ipynb)."""
from ratio_losses.data.fixtures import *  # noqa: F401,F403
from ratio_losses.data.fixtures import _image, _pickle, _idx_bytes, _cars_annos  # noqa: F401
