"""What the log should say about a configuration that loaded: things skipped, identities guessed.

None of these stops a load, yet each one once ran silently: a FIFO or a broken symlink in the config
directory was skipped without a word, and a program with a numeric ``user`` that has no passwd entry
ran with the supervisor's group (root's in most images) with nothing saying so.
"""

from __future__ import annotations

import os

from .config import Config


def load_notes(config: Config) -> list[str]:
    """Warnings to log after ``config`` was loaded (at start-up and after each reload)."""
    notes = list(config.notes)
    no_entry = [p for p in config.programs if p.user is not None and p.user.isdigit() and p.group is None]
    if no_entry:
        import pwd

        for program in no_entry:
            try:
                pwd.getpwuid(int(program.user))  # type: ignore[arg-type]
            except KeyError:
                notes.append(f"Program '{program.name}': user {program.user} has no passwd entry and no group is "
                             f"given: it runs with group {os.getegid()} (the supervisor's), as Docker and "
                             "OpenShift do for such ids; set 'group' to choose another")
    return notes
