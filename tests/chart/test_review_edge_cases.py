"""Chart edge cases found in review."""

from __future__ import annotations

from .helpers import notes


def test_notes_upgrade_command_takes_over_the_crd_fields_helm_owned() -> None:
    # helm install creates the CRD with a client-side apply; a later `kubectl apply --server-side`
    # conflicts on every field Helm's manager owns unless it forces them over (README, "Upgrading").
    upgrade = [line for line in notes().splitlines() if "kubectl apply --server-side" in line]
    assert upgrade, notes()
    assert all("--force-conflicts" in line for line in upgrade), upgrade
