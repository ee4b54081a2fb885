"""``--namespace``: the operator serves only its namespaces, with namespaced watches and requests.

kopf lists and watches ``/api/v1/namespaces`` in this mode, which kmock 0.8 cannot parse; the
``emulator`` fixture routes those paths (see ``emulator.parse_path_with_namespaces``).
"""

from __future__ import annotations

import asyncio

import kmock
import pytest

from progset_operator.runtime import Options

from .emulator import is_test_request
from .fixtures import Cluster, eventually, programset

HELLO = [{"name": "hello", "command": ["echo", "hello, world"]}]


@pytest.fixture
def operator_options() -> Options:
    return Options(standalone=True, namespaces=("team-a",))


async def test_only_the_served_namespace_is_rendered(operator, cluster: Cluster, emulator) -> None:
    await cluster.create(programset("web", HELLO, namespace="team-a"))
    await cluster.create(programset("web", HELLO, namespace="team-b"))
    cm = await eventually(lambda: cluster.configmap("web-programs", "team-a"))
    assert cm["metadata"]["namespace"] == "team-a"
    await eventually(lambda: (cluster.programset("web", "team-a") or {}).get("status"))
    await asyncio.sleep(0.2)
    assert cluster.configmap("web-programs", "team-b") is None
    assert "status" not in cluster.programset("web", "team-b")

    ours = [r for r in emulator if r.resource in (kmock.resource("progset.io/v1alpha1/programsets"),
                                                  kmock.resource("v1/configmaps"))
            and not is_test_request(r)]
    assert ours and all(r.namespace == "team-a" for r in ours)
