import pytest

from pipelines.testing import real_data_root


@pytest.fixture(scope="session")
def real_data():
    root = real_data_root()
    if root is None:
        pytest.skip("real recordings not found: ../shared/data/real is absent (set SPECSTORE_REAL_DATA)")
    return root


@pytest.fixture
def store(tmp_path):
    from stores import open_store

    return open_store(tmp_path / "store")
