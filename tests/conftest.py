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


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect server for the whole session (starting one takes seconds); flows run in this
    process or in subprocesses given its URL reuse it."""
    import os

    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    yield server.api_url
    server.stop()
    os.environ.pop("PREFECT_API_URL", None)
