"""The names `pipelines/arguments.py` writes down (so that `--help` imports no numerical library) match
their homes: the registries and the modules that define them."""

from features.config import FEATURES
from pipelines import arguments, audio, featurize, mixing, schedule
from pipelines.corpora import CORPORA


def test_registry_names_match():
    assert list(arguments.CORPUS_READERS) == CORPORA.names()
    assert list(arguments.FEATURE_KINDS) == FEATURES.names()
    assert list(arguments.CODECS) == sorted(featurize.CODECS)


def test_constants_match():
    assert arguments.MONO_POLICIES == audio.MONO_POLICIES
    assert (arguments.PAIR_KINDS, arguments.TARGETS) == (mixing.KINDS, mixing.TARGETS)
    assert arguments.DEFAULT_CRON == schedule.DEFAULT_CRON
