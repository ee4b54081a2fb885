"""One parsed config document and where its values are in the file, whatever parsed it.

YAML (libyaml) gives every value a line; JSON (the ``json`` module) gives none. Error messages
use :meth:`Document.where`, so they name ``file:line`` when the line is known and the file alone
otherwise (the ``spec.programs[1].command`` path is added by the caller either way).
"""

# No ``from __future__ import annotations`` here: typing.NamedTuple compiles every string annotation
# (about 0.1 ms a field), and this module is imported on the way to the first spawn.

from typing import Any, NamedTuple

from .model import Path


class Document(NamedTuple):
    data: Any
    lines: dict[Path, int]  # path -> 1-based line where its value starts; empty when unknown
    start_line: int  # 1-based; 0 when unknown

    def line_of(self, path: Path) -> int:
        """The line of the deepest known prefix of ``path`` (missing keys point at their parent); 0: unknown."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line is not None:
                return line
        return self.start_line

    def where(self, filename: str, path: Path = ()) -> str:
        line = self.line_of(path)
        return f"{filename}:{line}" if line else filename
