"""The names `training/arguments.py` writes down (so that `--help` imports no torch) match their homes."""

from training import arguments, distributed, enhance, stream
from training.models import MODELS


def test_model_names_match_the_registry():
    assert list(arguments.MODEL_NAMES) == MODELS.names()


def test_defaults_match_their_homes():
    assert arguments.DIST_TIMEOUT == distributed.DEFAULT_TIMEOUT
    assert arguments.SPLITS == stream.SPLITS
    assert (arguments.BLOCK_S, arguments.CONTEXT_S) == (enhance.BLOCK_S, enhance.CONTEXT_S)
