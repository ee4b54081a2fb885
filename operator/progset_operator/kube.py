"""Talking to the API server: client configuration, kopf's login, and a small JSON REST client.

One ``kubernetes.client.Configuration`` feeds both kopf (through the login handler) and our own
requests, so the watch streams and the writes always go to the same cluster with the same identity.

``$KUBECONFIG`` is read when the operator starts, not when ``kubernetes.config`` is imported (that
module freezes its default path at import time, which silently ignores a later change of the
variable). Then in-cluster service-account config, then ``~/.kube/config``.

The REST client sends and returns plain dicts: the generated models of ``kubernetes`` 37 validate and
convert every field, which costs time and hides what is actually on the wire.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import kopf
import kubernetes.client
import kubernetes.config
import urllib3

from .crd import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"


class KubeConfigError(RuntimeError):
    """No usable cluster configuration was found."""


class ApiError(RuntimeError):
    """A non-2xx answer of the API server, with its HTTP status and Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        """Worth retrying soon: conflicts, throttling, server-side failures."""
        return self.status in (409, 429) or self.status >= 500 or self.status == 0


def load_configuration(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """Client configuration from ``kubeconfig``, ``$KUBECONFIG``, in-cluster, or ``~/.kube/config``."""
    config = kubernetes.client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        try:
            kubernetes.config.load_kube_config(config_file=path, client_configuration=config)
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise KubeConfigError(f"cannot load kubeconfig {path}: {exc}") from exc
        return config
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
        return config
    except kubernetes.config.ConfigException:
        pass
    home = os.path.expanduser("~/.kube/config")
    if os.path.exists(home):
        kubernetes.config.load_kube_config(config_file=home, client_configuration=config)
        return config
    raise KubeConfigError("no cluster configuration: set KUBECONFIG, run in a pod with a service account, "
                          "or create ~/.kube/config")


def connection_info(config: kubernetes.client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials for the same cluster and identity as ``config``.

    The token is read through ``get_api_key_with_prefix`` on every login, so exec plugins and
    projected service-account tokens that the client library refreshes stay fresh for kopf too.
    """
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


def configmap_path(namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/configmaps"
    return f"{path}/{quote(name)}" if name else path


def programset_path(namespace: str, name: str, subresource: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"
    return f"{path}/{subresource}" if subresource else path


class KubeClient:
    """Blocking JSON requests through the official client's connection pool and authentication.

    Blocking on purpose: the reconciler calls it through ``asyncio.to_thread``, and the official
    client is the one that knows every kubeconfig authentication method.
    """

    def __init__(self, config: kubernetes.client.Configuration, *, timeout: float = 30.0) -> None:
        self.api = kubernetes.client.ApiClient(config)
        self.api.user_agent = "progset-operator"
        self.timeout = timeout

    def close(self) -> None:
        self.api.close()

    def request(self, method: str, path: str, *, body: Any = None, content_type: str | None = None,
                query: Mapping[str, str] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        if query:
            path = f"{path}?{urlencode(dict(query))}"
        method, url, headers, body, post = self.api.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(method, url, header_params=headers, body=body, post_params=post,
                                         _request_timeout=self.timeout)
        except kubernetes.client.ApiException as exc:  # TLS failures are reported this way
            raise ApiError(exc.status or 0, str(exc.reason), str(exc.body or exc)) from exc
        except urllib3.exceptions.HTTPError as exc:  # refused, reset, timed out
            raise ApiError(0, type(exc).__name__, str(exc)) from exc
        raw = response.read()
        payload: dict[str, Any] = json.loads(raw) if raw else {}
        if not 200 <= response.status <= 299:
            raise ApiError(response.status, str(payload.get("reason") or response.reason),
                           str(payload.get("message") or raw[:200]))
        return payload

    def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=dict(body))

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, body=dict(body), content_type=MERGE_PATCH)

    def delete(self, path: str, *, uid: str | None = None) -> bool:
        """Delete; with ``uid`` only that incarnation of the object. False when it was already gone."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", path, body=options)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True
