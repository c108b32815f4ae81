"""voicecheck: voiceprint consistency checks for call-centre recordings.

Nothing heavy is imported here, so ``import voicecheck`` and ``voicecheck --help`` stay fast.
"""

__version__ = "0.1.0"
