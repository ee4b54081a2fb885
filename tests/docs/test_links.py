"""Links in the Markdown files a newcomer reads: every ``#anchor`` names a heading of that file (as
GitHub derives it), every relative path exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
DOCUMENTS = ["README.md", "examples/README.md", "bench/README.md", "bench/RESULTS.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but '-' and '_'), spaces to '-'."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            base = slug(line.lstrip("#"))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def outside_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


@pytest.mark.parametrize("name", [d for d in DOCUMENTS if (PROJECT / d).exists()])
def test_links_resolve(name: str) -> None:
    path = PROJECT / name
    text = path.read_text()
    dead = []
    for target in LINK.findall(outside_code(text)):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        document = (path.parent / file_part).resolve() if file_part else path
        if not document.exists() or PROJECT not in (document, *document.parents):
            dead.append(f"{target}: no such file in the repository")
        elif anchor and document.suffix == ".md" and anchor not in anchors(document.read_text()):
            dead.append(f"{target}: no heading with that anchor in {document.relative_to(PROJECT)}")
    assert not dead, f"dead links in {name}:\n" + "\n".join(dead)


def test_slug_matches_github() -> None:
    assert slug("Metrics, liveness and permissions") == "metrics-liveness-and-permissions"
    assert slug("`/status`") == "status"
    assert slug("Sockets: `-S`") == "sockets--s"


def test_chart_notes_name_only_what_the_chart_carries() -> None:
    """A Helm user has the chart, not this repository: NOTES.txt applies no file of ours, and the
    ProgramSet it pipes into kubectl is one the model accepts."""
    import json

    from progset_supervisor.config import load_text
    from tests.chart.helpers import notes

    text = notes()
    applied = re.findall(r"kubectl apply [^|\n]*-f (\S+)", text)
    for target in applied:
        assert target == "-" or target.startswith("progset/crds/"), f"NOTES.txt applies {target}, not in the chart"
    for line in text.splitlines():
        if "| kubectl apply -f -" in line:
            manifest = json.loads(line.split("echo '", 1)[1].split("' |", 1)[0])
            config = load_text(json.dumps(manifest), "NOTES.json")
            assert [p.name for p in config.programs] == ["hello"]
            break
    else:
        raise AssertionError("NOTES.txt shows no ProgramSet to apply")
    for mention in re.findall(r"\bexamples/[\w./-]+", text):
        paragraph = next(p for p in text.split("\n\n") if mention in p)
        assert "source repository" in paragraph, f"NOTES.txt names {mention} as if the chart had it"
