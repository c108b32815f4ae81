"""``python -m tests.fake_cli ARGS``: the voicecheck command with the tests' fake backend registered.

A manifest names no code (voicecheck.embedders), so a CLI subprocess that uses ``--model fake`` needs
the fake registered in its own process first.
"""

from __future__ import annotations

import tests.fakes  # noqa: F401 - registers the "fake" backend
from voicecheck.cli import main

if __name__ == "__main__":
    main()
