"""Stop order: which programs stop together, dependents before what they depend on (pure), and the
small sequencer that runs those lanes (callbacks only, no I/O).

Used for the shutdown (everything that is alive), for a reload (the programs it stops or restarts)
and for ``stop <name>`` (the program and everything that depends on it). A *lane* is a set of
programs stopped at the same time; lane ``k + 1`` starts stopping once every program of lane ``k`` is
gone. A program's lane is the length of the longest chain of stopping programs that depend on it,
directly or through programs that are not stopping; so with no ``dependsOn`` at all, everything is
one lane and stops at once. O(programs + dependencies); the model refuses cycles.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping


def dependents_of(depends_on: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Reverse the graph: for each program, the programs that name it in ``dependsOn``."""
    reverse: dict[str, list[str]] = {name: [] for name in depends_on}
    for name, deps in depends_on.items():
        for dep in deps:
            reverse.setdefault(dep, []).append(name)
    return reverse


def stop_lanes(depends_on: Mapping[str, Iterable[str]], stopping: Collection[str]) -> list[list[str]]:
    """Lanes of ``stopping`` (names), first lane first; names keep the order of ``depends_on``, with
    names unknown to the graph (say, removed from the configuration) in the first lane."""
    reverse = dependents_of(depends_on)
    height: dict[str, int] = {}

    def height_of(name: str) -> int:
        # Iterative post-order: dependency chains can be long, recursion limits must not matter.
        stack = [(name, False)]
        while stack:
            node, expanded = stack.pop()
            if node in height:
                continue
            children = reverse.get(node, ())
            if not expanded:
                stack.append((node, True))
                stack.extend((child, False) for child in children if child not in height)
                continue
            best = 0
            for child in children:
                best = max(best, height[child] + (1 if child in stopping else 0))
            height[node] = best
        return height[name]

    order = [name for name in depends_on if name in stopping]
    order += [name for name in stopping if name not in depends_on]
    lanes: list[list[str]] = []
    for name in order:
        lane = height_of(name) if name in depends_on else 0
        while len(lanes) <= lane:
            lanes.append([])
        lanes[lane].append(name)
    return [lane for lane in lanes if lane]


def with_dependents(depends_on: Mapping[str, Iterable[str]], name: str) -> list[str]:
    """``name`` and every program that depends on it, directly or not (for ``stop <name>``)."""
    reverse = dependents_of(depends_on)
    seen = {name}
    todo = [name]
    while todo:
        for child in reverse.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return [n for n in depends_on if n in seen]


def run_lanes(lanes: list[list[str]], stop: Callable[[str, Callable[[], None]], bool],
              finished: Callable[[], None]) -> None:
    """Stop lane after lane: ``stop(name, done)`` returns False when there is nothing to wait for,
    otherwise it calls ``done`` once ``name`` is gone; ``finished`` after the last lane."""
    def lane(index: int) -> None:
        if index >= len(lanes):
            finished()
            return
        pending = 1

        def one_done() -> None:
            nonlocal pending
            pending -= 1
            if pending == 0:
                lane(index + 1)
        for name in lanes[index]:
            pending += 1
            if not stop(name, one_done):
                pending -= 1
        one_done()
    lane(0)
