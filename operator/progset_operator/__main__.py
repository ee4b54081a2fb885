"""``progset-operator``: run the operator, or print the CRD it serves.

    progset-operator run [--namespace NS]... | [--all-namespaces] [--standalone]
                         [--liveness URL] [--metrics-port N] [--kubeconfig PATH]
                         [--webhook --sidecar-image IMAGE [--webhook-failure-policy Ignore|Fail] ...]
    progset-operator inject -f FILE [-f FILE]... [-n NS] [--image IMAGE] [--cluster]
    progset-operator crd
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import kopf

from .admission import POLICIES, api_lookup
from .crd import crd_yaml
from .inject import Defaults
from .kube import KubeClient, KubeConfigError, load_configuration
from .manifests import ManifestError, render_files
from .metrics import serve
from .runtime import Options, build
from .webhook import DEFAULT_PORT, WebhookOptions

DEFAULT_METRICS_PORT = 9128
log = logging.getLogger("progset_operator")


def default_image() -> str:
    """The supervisor image of this release (the chart sets its own, from its values)."""
    try:
        version = metadata.version("progset")
    except metadata.PackageNotFoundError:
        version = "latest"
    return f"ghcr.io/progset/progset-supervisor:{version}"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="progset-operator",
                                   description="Render ProgramSet resources into ConfigMaps for progset-supervisor.")
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the cluster of $KUBECONFIG or in-cluster")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="serve only this namespace (repeatable; kopf globs such as 'team-*' work)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="serve every namespace (the default when no --namespace is given)")
    run.add_argument("--standalone", action="store_true",
                     help="do not coordinate with other replicas through kopf peering")
    run.add_argument("--peering", metavar="NAME", help="kopf peering object to coordinate replicas with")
    run.add_argument("--liveness", metavar="URL",
                     help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, metavar="N",
                     help=f"Prometheus /metrics port (default {DEFAULT_METRICS_PORT}; 0 disables)")
    run.add_argument("--metrics-address", default="0.0.0.0", metavar="ADDR", help="metrics listen address")
    run.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default: $KUBECONFIG, in-cluster, "
                                                          "~/.kube/config)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging of the operator")
    run.add_argument("--log-format", choices=[f.name.lower() for f in kopf.LogFormat], default="full",
                     help="log line format (json for log collectors)")

    hook = run.add_argument_group("sidecar injection webhook (README.md, \"Wire a pod in one line\")")
    hook.add_argument("--webhook", action="store_true",
                      help="serve the mutating webhook that wires pods labelled progset.io/programset")
    hook.add_argument("--sidecar-image", default=default_image(), metavar="IMAGE",
                      help="the supervisor image injected (default %(default)s; annotation progset.io/image "
                           "overrides it per pod)")
    hook.add_argument("--webhook-port", type=int, default=DEFAULT_PORT, metavar="N",
                      help="HTTPS port of the webhook (default %(default)s)")
    hook.add_argument("--webhook-address", default="0.0.0.0", metavar="ADDR", help="webhook listen address")
    hook.add_argument("--webhook-failure-policy", choices=POLICIES, default="Ignore",
                      help="the MutatingWebhookConfiguration's failurePolicy: Fail refuses a pod that cannot "
                           "be wired, Ignore admits it with a progset.io/injection-error annotation")
    hook.add_argument("--webhook-cert-dir", type=Path, default=Path("/tmp/progset-webhook"), metavar="DIR",
                      help="tls.crt and tls.key of the webhook: cert-manager's mounted Secret, or where the "
                           "operator writes its own (default %(default)s)")
    hook.add_argument("--webhook-secret", metavar="NAME",
                      help="self-signed mode: the Secret the operator keeps its CA and certificate in")
    hook.add_argument("--webhook-namespace", metavar="NS", help="self-signed mode: the operator's namespace")
    hook.add_argument("--webhook-service", metavar="NAME",
                      help="self-signed mode: the webhook Service (the certificate names NAME.NS.svc)")
    hook.add_argument("--webhook-config", metavar="NAME",
                      help="self-signed mode: the MutatingWebhookConfiguration whose caBundle the operator sets")

    inject = commands.add_parser(
        "inject", help="print manifests with their labelled pod templates wired to progset (the webhook's "
                       "code path, for review or as a GitOps render step)")
    inject.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                        help="YAML manifests ('-' for stdin); repeatable. ProgramSets among them are used to "
                             "find each ConfigMap's name")
    inject.add_argument("-n", "--namespace", default="default",
                        help="namespace of documents that name none (default %(default)s)")
    inject.add_argument("--image", default=default_image(), metavar="IMAGE",
                        help="the supervisor image injected (default %(default)s)")
    inject.add_argument("--cluster", action="store_true",
                        help="read ProgramSets not among the files from the cluster ($KUBECONFIG), refusing "
                             "pods whose ProgramSet does not exist, as the webhook does")
    inject.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file for --cluster")

    commands.add_parser("crd", help="print the ProgramSet CustomResourceDefinition (YAML)")
    return root


def webhook_from(args: argparse.Namespace) -> WebhookOptions | None:
    if not args.webhook:
        return None
    return WebhookOptions(image=args.sidecar_image, port=args.webhook_port, address=args.webhook_address,
                          policy=args.webhook_failure_policy, cert_dir=args.webhook_cert_dir,
                          secret=args.webhook_secret, namespace=args.webhook_namespace,
                          service=args.webhook_service, config=args.webhook_config)


def options_from(args: argparse.Namespace) -> Options:
    return Options(namespaces=tuple(args.namespace), standalone=args.standalone, liveness=args.liveness,
                   metrics_port=args.metrics_port, metrics_address=args.metrics_address,
                   kubeconfig=args.kubeconfig, peering=args.peering, webhook=webhook_from(args))


def run(args: argparse.Namespace) -> int:
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()], log_prefix=True)
    try:
        options = options_from(args)
    except ValueError as exc:
        print(f"progset-operator: {exc}", file=sys.stderr)
        return 2
    try:
        operator = build(options)
    except KubeConfigError as exc:
        print(f"progset-operator: {exc}", file=sys.stderr)
        return 2
    if options.metrics_port:
        serve(operator.metrics, options.metrics_port, options.metrics_address)
        log.info("metrics on http://%s:%d/metrics", options.metrics_address, options.metrics_port)
    scope = ", ".join(options.namespaces) if options.namespaces else "all namespaces"
    log.info("serving ProgramSets in %s (%s)", scope, "standalone" if options.standalone else "peering")
    try:
        kopf.run(**operator.kopf_kwargs())
    finally:
        operator.client.close()
    return 0


def inject(args: argparse.Namespace) -> int:
    client = None
    try:
        if args.cluster:
            client = KubeClient(load_configuration(args.kubeconfig))
        render_files(args.filename, Defaults(image=args.image), args.namespace,
                     api_lookup(client) if client else None, sys.stdin, sys.stdout)
    except (ManifestError, KubeConfigError) as exc:
        print(f"progset-operator inject: {exc}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(crd_yaml())
        return 0
    if args.command == "inject":
        return inject(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
