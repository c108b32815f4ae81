"""Where the browser tests and the report benchmark find Chromium, and how they start it.

Debian's chromium (``apt-get install -y chromium``; scripts/test.sh installs it when it can), driven
by Playwright with ``executable_path``: Playwright never downloads a browser of its own here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
"""No sandbox (tests run as root in CI) and none of Chromium's own network traffic (this machine's
network is closed: Chromium's background connections would be refused, many at a time)."""


def chromium_path() -> str | None:
    """VOICECHECK_CHROMIUM, else chromium on the PATH, else None."""
    path = os.environ.get("VOICECHECK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return path if path and Path(path).is_file() else None
