import pytest

from pipelines.testing import real_data_root


@pytest.fixture(scope="session", autouse=True)
def catalogue_cache(tmp_path_factory):
    """The catalogue's cache of tables' columns (`stores.scans`) in the session's temporary folder, not in the
    user's: for this process and the commands it starts."""
    import os

    os.environ["SPECSTORE_CACHE"] = str(tmp_path_factory.mktemp("catalogue-cache"))


@pytest.fixture(scope="session", autouse=True)
def prefect_server_state(tmp_path_factory):
    """The persistent Prefect server's state folder (`pipelines.prefect_server`) in the session's temporary
    folder, never the user's; a server a test left there is stopped at the end."""
    import os

    from pipelines.prefect_server import HOME_ENV, stop_server

    folder = tmp_path_factory.mktemp("prefect-server")
    os.environ[HOME_ENV] = str(folder)
    yield folder
    stop_server(folder)


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


@pytest.fixture(scope="session")
def demo_sets(tmp_path_factory):
    """(root, {"mag": id, "mel": id}) of a demo store built once: corpus demo, its noises (corpus noise-noisy),
    pairs noisy, and magnitude and log-mel feature sets of them. Tests change copies (`demo_copy`)."""
    from features import feature_config
    from pipelines.testing import build_demo_store

    kinds = {"mag": feature_config("magnitude"), "mel": feature_config("logmel")}
    store, ids = build_demo_store(tmp_path_factory.mktemp("demo-sets"), kinds)
    return store.root, ids


@pytest.fixture
def demo_copy(demo_sets, tmp_path):
    """(a copy of the `demo_sets` store, its feature ids)."""
    from pipelines.testing import copy_store

    return copy_store(demo_sets[0], tmp_path), demo_sets[1]
