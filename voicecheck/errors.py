"""One exception family. Messages say what (with the value), why, and how to fix."""

from __future__ import annotations


class VoicecheckError(Exception):
    """Base of every error voicecheck raises on purpose.

    ``code`` is a short machine-readable reason used in result records.
    """

    code = "error"


class UsageError(VoicecheckError):
    """Bad arguments, configuration or manifest."""

    code = "usage_error"


class AudioError(VoicecheckError):
    """Audio that cannot be read: missing, empty, truncated, not audio."""

    code = "unreadable_audio"


class InsufficientSpeechError(VoicecheckError):
    """Less net speech than the model needs for a reliable embedding."""

    code = "insufficient_speech"

    def __init__(self, message: str, speech_seconds: float = 0.0) -> None:
        super().__init__(message)
        self.speech_seconds = speech_seconds


class NotEnrolledError(VoicecheckError):
    """The borrower (or agent) has no voiceprint for this model."""

    code = "not_enrolled"


class ModelMismatchError(VoicecheckError):
    """Two vectors from different models were about to be compared."""

    code = "model_mismatch"


class StoreError(VoicecheckError):
    """A voiceprint or embedding store that cannot be opened or is inconsistent."""

    code = "store_error"


class BackendUnavailableError(VoicecheckError):
    """An embedding backend whose optional packages or weights are missing."""

    code = "backend_unavailable"
