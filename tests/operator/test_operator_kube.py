"""Client configuration (KUBECONFIG, explicit path, none) and the JSON REST client on the wire."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from progset_operator.kube import (
    MERGE_PATCH,
    ApiError,
    KubeClient,
    KubeConfigError,
    configmap_path,
    connection_info,
    load_configuration,
)


def write_kubeconfig(path: Path, server: str, token: str = "s3cret") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    return path


def test_kubeconfig_is_read_from_the_environment_at_call_time(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # kubernetes.config froze its default path when it was imported, long before this line.
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "a", "https://a.example:6443")))
    info = connection_info(load_configuration())
    assert (info.server, info.scheme, info.token, info.insecure) == ("https://a.example:6443", "Bearer", "s3cret",
                                                                     True)


def test_explicit_kubeconfig_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "a", "https://a.example")))
    explicit = write_kubeconfig(tmp_path / "b", "https://b.example", token="other")
    info = connection_info(load_configuration(str(explicit)))
    assert (info.server, info.token) == ("https://b.example", "other")


def test_no_configuration_at_all_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KubeConfigError, match="set KUBECONFIG"):
        load_configuration()


def test_broken_kubeconfig_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(KubeConfigError, match=str(bad)):
        load_configuration(str(bad))


async def test_rest_client_speaks_plain_json_and_merge_patch(emulator, kubeconfig) -> None:
    client = KubeClient(load_configuration())
    call = asyncio.to_thread
    try:
        assert await call(client.get, configmap_path("default", "x")) is None
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}}
        created = await call(client.create, configmap_path("default"), body)
        assert created["metadata"]["uid"]
        patched = await call(client.merge_patch, configmap_path("default", "x"), {"data": {"a": None}})
        assert patched["data"] == {"b": "2"}
        with pytest.raises(ApiError) as conflict:
            await call(client.create, configmap_path("default"), body)
        assert conflict.value.status == 409 and conflict.value.transient
        assert await call(lambda: client.delete(configmap_path("default", "x"), uid=created["metadata"]["uid"]))
        assert not await call(client.delete, configmap_path("default", "x"))
    finally:
        client.close()
    patch = next(r for r in emulator if r.method == "PATCH")
    assert patch.headers["Content-Type"] == MERGE_PATCH
    assert patch.headers["Authorization"] == "Bearer not-checked"
    delete = next(r for r in emulator if r.method == "DELETE")
    assert delete.data["preconditions"] == {"uid": created["metadata"]["uid"]}
