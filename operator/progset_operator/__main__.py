"""``progset-operator``: run the operator, or print the CRD it serves.

    progset-operator run [--namespace NS]... | [--all-namespaces] [--standalone]
                         [--liveness URL] [--metrics-port N] [--kubeconfig PATH]
    progset-operator crd
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import kopf

from .crd import crd_yaml
from .kube import KubeConfigError
from .metrics import serve
from .runtime import Options, build

DEFAULT_METRICS_PORT = 9128
log = logging.getLogger("progset_operator")


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

    commands.add_parser("crd", help="print the ProgramSet CustomResourceDefinition (YAML)")
    return root


def options_from(args: argparse.Namespace) -> Options:
    return Options(namespaces=tuple(args.namespace), standalone=args.standalone, liveness=args.liveness,
                   metrics_port=args.metrics_port, metrics_address=args.metrics_address,
                   kubeconfig=args.kubeconfig, peering=args.peering)


def run(args: argparse.Namespace) -> int:
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()], log_prefix=True)
    options = options_from(args)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(crd_yaml())
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
