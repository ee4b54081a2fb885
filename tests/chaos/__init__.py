"""The chaos suite (issue 15): the supervisor under stalled pipes, floods, bad reloads.

Bounded (about 2 minutes in all) and part of ``make test``. The process-tree cases (``setsid``
grandchildren gone after ``stop`` and after SIGKILL of the supervisor, issue 15.4) belong in
``test_process_trees.py`` here, written with the process-tree ownership work.
"""
