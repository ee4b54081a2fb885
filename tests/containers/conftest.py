"""Container tests (marker ``containers``): progset's images built from this checkout and run for real.

They need a container engine: without one they are skipped, except under ``PROGSET_REQUIRE_PEERS=1``
(CI, where ``.ci/run`` installs and starts dockerd) where that is a failure naming what is missing.
Run only them with ``pytest -m containers``; leave them out with ``-m 'not containers'``.

Fixtures for other container tests (the webhook injection tests reuse them): ``progset_image_names``
(kind -> image built from this checkout), ``debian_base_without_python`` and ``free_port``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .engine import base_image, progset_images, require_engine

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "containers: builds and runs container images (needs docker)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def progset_image_names() -> dict[str, str]:
    """``{"supervisor": ..., "operator": ..., "bundle": ...}``, built once per source state."""
    require_engine()
    return progset_images()


@pytest.fixture(scope="session")
def debian_base_without_python() -> str:
    """A Debian minbase image with HAProxy and no Python: the "any image" of the bundle tests."""
    require_engine()
    return base_image("haproxy")


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port free right now (containers here share the host's network, loopback only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
