"""The chart's RBAC is least privilege: no wildcard, nothing the operator never uses, everything it does use.

Two sources for "what the operator uses":
- ``USES`` below, the documented list (from operator/progset_operator and kopf 1.45's own requests);
- the requests the emulated API server recorded while the real operator (the operator tests' fixtures,
  kopf included) ran a scenario that takes every code path that talks to the API: create, drift
  repair, rename of the ConfigMap (delete of the old one), an invalid spec, events, in cluster-wide
  and namespaced mode. Every recorded request must be allowed by the rendered rules, namespace by
  namespace, and must be in ``USES``; every rule must be in ``USES``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kmock
import pytest

from tests.operator import fixtures as operator_tests
from tests.operator.emulator import rbac_requests

from .helpers import NAMESPACE, RELEASE, Grant, Request, allowed, grants, objects, parse_usage

WATCHED = ("team-a", "team-b")

# (verb, plural[.group][/subresource], namespaced?) as the operator tests spell them.
OPERATOR_USES = {
    ("get", "programsets.progset.io"), ("list", "programsets.progset.io"), ("watch", "programsets.progset.io"),
    ("patch", "programsets.progset.io"),  # kopf's bookkeeping annotations
    ("patch", "programsets.progset.io/status"),
    ("get", "configmaps"), ("list", "configmaps"), ("watch", "configmaps"), ("create", "configmaps"),
    ("patch", "configmaps"), ("delete", "configmaps"),
    ("create", "events"),
}
# Never an API request, but checked by the OwnerReferencesPermissionEnforcement admission plugin when the
# operator sets blockOwnerDeletion on the ConfigMap's ownerReference.
ADMISSION_USES = {("update", "programsets.progset.io/finalizers")}
# kopf's scanning (rbac.kopfScanning): cluster-level, read-only.
SCANNING_USES = {("list", "customresourcedefinitions.apiextensions.k8s.io"),
                 ("watch", "customresourcedefinitions.apiextensions.k8s.io")}
NAMESPACE_SCANNING_USES = {("list", "namespaces"), ("watch", "namespaces")}
CLUSTER_LEVEL = {("list", "programsets.progset.io"), ("watch", "programsets.progset.io"), ("list", "configmaps"),
                 ("watch", "configmaps")}  # cluster-wide mode lists and watches across namespaces


def uses(watch: tuple[str, ...], *, scanning: bool = True) -> set[Request]:
    """Every request the operator makes (or admission checks) in one mode, with its namespace."""
    requests: set[Request] = set()
    spots: Iterable[str] = watch or ("default", *WATCHED)
    for verb, resource in OPERATOR_USES | ADMISSION_USES:
        if not watch and (verb, resource) in CLUSTER_LEVEL:
            requests.add(parse_usage(verb, resource, None))
        else:
            requests.update(parse_usage(verb, resource, ns) for ns in spots)
    if scanning:
        requests.update(parse_usage(v, r, None) for v, r in SCANNING_USES)
        if watch:
            requests.update(parse_usage(v, r, None) for v, r in NAMESPACE_SCANNING_USES)
    return requests


def chart_grants(values: dict[str, Any] | None = None) -> list[Grant]:
    objs = objects(values)
    (account,) = [o for o in objs if o["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == RELEASE
    return grants(objs, RELEASE, NAMESPACE)


MODES = {
    "cluster-wide": ({}, (), True),
    "cluster-wide-no-scanning": ({"rbac": {"kopfScanning": False}}, (), False),
    "namespaced": ({"watchNamespaces": list(WATCHED)}, WATCHED, True),
    "namespaced-no-scanning": ({"watchNamespaces": list(WATCHED), "rbac": {"kopfScanning": False}}, WATCHED, False),
}


@pytest.mark.parametrize("mode", MODES)
def test_no_wildcards_and_no_non_resource_urls(mode: str) -> None:
    for grant in chart_grants(MODES[mode][0]):
        rule = grant.rule
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule
        for field in ("apiGroups", "resources", "verbs"):
            assert rule[field] and not any("*" in item for item in rule[field]), rule


@pytest.mark.parametrize("mode", MODES)
def test_every_use_is_allowed(mode: str) -> None:
    values, watch, scanning = MODES[mode]
    granted = chart_grants(values)
    assert [str(r) for r in uses(watch, scanning=scanning) if not allowed(granted, r)] == []


@pytest.mark.parametrize("mode", MODES)
def test_every_rule_is_used(mode: str) -> None:
    values, watch, scanning = MODES[mode]
    documented = {(r.verb, r.group, r.resource) for r in uses(watch, scanning=scanning)}
    for grant in chart_grants(values):
        for group in grant.rule["apiGroups"]:
            for resource in grant.rule["resources"]:
                for verb in grant.rule["verbs"]:
                    assert (verb, group, resource) in documented, f"{verb} {resource} ({group!r}) is never used"


def test_namespaced_mode_grants_nothing_outside_the_watched_namespaces() -> None:
    granted = chart_grants(MODES["namespaced"][0])
    for verb, resource in OPERATOR_USES | ADMISSION_USES:
        assert not allowed(granted, parse_usage(verb, resource, "kube-system")), (verb, resource)
        assert not allowed(granted, parse_usage(verb, resource, None)), (verb, resource)
    assert all(g.namespace in WATCHED for g in granted if g.rule["apiGroups"] != ["apiextensions.k8s.io"]
               and g.rule["resources"] != ["namespaces"])
    objs = objects({"watchNamespaces": list(WATCHED), "rbac": {"kopfScanning": False}})
    assert [o["kind"] for o in objs if o["kind"].startswith("Cluster")] == []
    assert sorted(o["metadata"]["namespace"] for o in objs if o["kind"] == "Role") == list(WATCHED)


def test_rbac_create_false_renders_no_rbac() -> None:
    assert [o for o in objects({"rbac": {"create": False}}) if "Role" in o["kind"]] == []


# --- the operator running against the emulated API server -----------------------------------------------


HELLO = [{"name": "hello", "command": ["echo", "hello, world"]}]
BROKEN = [{"name": "api", "command": ["/bin/api"], "dependsOn": ["nope"]}]


def recorded(emu: kmock.KubernetesEmulator) -> set[Request]:
    """The operator's requests (not the test's) as RBAC sees them, with their namespace."""
    return {Request(*request) for request in rbac_requests(emu)}


async def exercise(cluster: Any, namespaces: Iterable[str]) -> None:
    """Every API-facing path of the reconciler, in each namespace."""
    eventually, ps_url, cm_url = operator_tests.eventually, operator_tests.ps_url, operator_tests.cm_url
    programset = operator_tests.programset
    for ns in namespaces:
        await cluster.create(programset("web", HELLO, namespace=ns, configMapName="first"))
        await eventually(lambda ns=ns: (cluster.programset("web", ns) or {}).get("status"))
        await cluster.patch(cm_url(ns, "first"), {"data": {"programs.json": "tampered"}})  # drift: get + patch
        await eventually(lambda ns=ns: cluster.configmap("first", ns)["data"]["programs.json"] != "tampered")
        await cluster.patch(ps_url(ns, "web"), {"spec": {"configMapName": "second"}})  # rename: delete the old
        await eventually(lambda ns=ns: cluster.configmap("second", ns) and cluster.configmap("first", ns) is None)
        await cluster.create(programset("bad", BROKEN, namespace=ns))  # invalid: status + Warning event
        await eventually(lambda ns=ns: (cluster.programset("bad", ns) or {}).get("status"))


async def settle(emu: kmock.KubernetesEmulator, namespaces: Iterable[str]) -> set[Request]:
    """Wait for kopf's event poster to have posted in every namespace, then return what was recorded."""
    want = {Request("create", "", "events", ns) for ns in namespaces}
    await operator_tests.eventually(lambda: want <= recorded(emu))
    return recorded(emu)


async def test_cluster_wide_operator_requests_are_allowed_and_documented(emulator, kubeconfig, cluster) -> None:
    served = ("default", "team-a")
    async with operator_tests.running(emulator, operator_tests.Options(standalone=True)):
        await exercise(cluster, served)
        used = await settle(emulator, served)
    granted = chart_grants()
    assert [str(r) for r in used if not allowed(granted, r)] == []
    assert {r for r in used} <= uses(())
    # The scenario took every path: all documented API requests were really made.
    made = {(r.verb, r.group, r.resource) for r in used}
    never_requested = {(r.verb, r.group, r.resource) for r in uses(())} - made
    assert never_requested == {("update", "progset.io", "programsets/finalizers")}  # checked by admission only
    # Without kopf's scanning permissions, only kopf's scanning is refused (kopf falls back to a one-off scan).
    refused = {str(r) for r in used if not allowed(chart_grants({"rbac": {"kopfScanning": False}}), r)}
    assert refused == {"list customresourcedefinitions.apiextensions.k8s.io cluster-wide",
                       "watch customresourcedefinitions.apiextensions.k8s.io cluster-wide"}


async def test_namespaced_operator_requests_are_allowed_and_documented(emulator, kubeconfig, cluster) -> None:
    options = operator_tests.Options(standalone=True, namespaces=WATCHED)
    async with operator_tests.running(emulator, options):
        await exercise(cluster, WATCHED)
        used = await settle(emulator, WATCHED)
    values = {"watchNamespaces": list(WATCHED)}
    granted = chart_grants(values)
    assert [str(r) for r in used if not allowed(granted, r)] == []
    assert used <= uses(WATCHED)
    assert {r.namespace for r in used} == {*WATCHED, None}
    refused = {str(r) for r in used if not allowed(chart_grants({**values, "rbac": {"kopfScanning": False}}), r)}
    assert {r.split()[1] for r in refused} == {"customresourcedefinitions.apiextensions.k8s.io", "namespaces"}
    assert all(r.endswith("cluster-wide") for r in refused)
