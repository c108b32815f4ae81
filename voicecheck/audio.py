"""Decode audio files, pick the customer channel, resample."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np

from .errors import AudioError, UsageError
from .types import Audio

# libsndfile's log line for a WAV/AIFF data chunk longer than the file, e.g. "data : 96000 (should be 47978)"
_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNSET_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the size unset; not a truncation


MAX_AUDIO_BYTES = 256 * 1024 * 1024
MAX_AUDIO_S = 3600.0
"""Defaults of ``Settings.max_audio_bytes`` / ``max_audio_s``: a collection call lasts minutes."""


def load(
    path: str | Path, channel: int | None = 1, max_bytes: int = MAX_AUDIO_BYTES, max_s: float = MAX_AUDIO_S
) -> Audio:
    """Read one channel of an audio file at its own sample rate.

    WAV (PCM 16/24/32, float, G.711 mu-law/A-law), FLAC, OGG and MP3 are read through soundfile.
    Only a regular file of at most ``max_bytes`` and ``max_s`` is decoded: a pipe, a device or an
    endless stream is an error at once, never a hang or gigabytes of memory.

    Args:
        path: the file.
        channel: channel to take from a multi-channel file (0-based); mono files ignore it.
            None takes channel 0.
        max_bytes: largest file accepted.
        max_s: longest recording accepted (seconds).

    Returns:
        The chosen channel as float32 in [-1, 1], with the file's sample rate and content hash.

    Raises:
        AudioError: missing, empty, truncated, undecodable, not a regular file, over the limits, or
            non-finite samples.
        UsageError: the requested channel does not exist in a multi-channel file.
    """
    import soundfile as sf

    from .files import read_regular

    p = Path(path)
    data = read_regular(p, max_bytes, "audio file", AudioError)
    if not data:
        raise AudioError(f"{p}: empty file (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sample_rate, channels, subtype = f.samplerate, f.channels, f.subtype
            if f.frames > max_s * sample_rate:
                raise AudioError(
                    f"{p}: {f.frames / sample_rate:.0f} s long, more than the {max_s:g} s limit for one call; "
                    "raise max_audio_s in the settings if the recording is genuine"
                )
            samples = f.read(dtype="float32", always_2d=True)
            cut = _DATA_SIZE.search(f.extra_info)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError) as e:
        reason = str(e).split(":")[-1].strip() or type(e).__name__
        raise AudioError(f"{p}: not a readable audio file ({reason})") from None
    if cut and int(cut[1]) not in _UNSET_SIZES and int(cut[1]) > int(cut[2]):
        raise AudioError(
            f"{p}: truncated: the header declares {int(cut[1])} bytes of audio data but the file holds "
            f"{int(cut[2])}; the recording was cut off (copy it again from its source)"
        )
    if samples.shape[0] == 0:
        raise AudioError(f"{p}: holds no audio samples (empty or truncated file)")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{p}: contains NaN or infinite samples")
    if channels == 1:
        chosen = 0
    else:
        chosen = 0 if channel is None else channel
        if not 0 <= chosen < channels:
            raise UsageError(
                f"{p}: has {channels} channels (0..{channels - 1}); channel {chosen} does not exist; "
                "set --channel or the manifest's customer_channel"
            )
    return Audio(
        samples=np.ascontiguousarray(samples[:, chosen]),
        sample_rate=int(sample_rate),
        path=str(p),
        channel=chosen,
        channels=int(channels),
        file_sample_rate=int(sample_rate),
        subtype=str(subtype),
        content_hash=hashlib.sha256(data).hexdigest(),
    )


def resample(samples: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono float32 audio with librosa (soxr). Returns float32, shape (~n * target/source,)."""
    if sample_rate <= 0 or target_rate <= 0:
        raise UsageError(f"sample rates must be positive, got {sample_rate} -> {target_rate}")
    x = np.asarray(samples, dtype=np.float32)
    if sample_rate == target_rate or len(x) == 0:
        return x
    import librosa

    return librosa.resample(x, orig_sr=sample_rate, target_sr=target_rate, res_type="soxr_hq").astype(np.float32)


def resample_spans(
    samples: np.ndarray, sample_rate: int, target_rate: int, spans_s: list[tuple[float, float]], margin_s: float = 0.1
) -> list[np.ndarray]:
    """Parts of a recording at ``target_rate``: what resampling all of it and cutting the spans gives
    (to float rounding), at the cost of resampling only the spans and ``margin_s`` around each.

    Each span is resampled with its margin, starting on a sample both rates share, so its samples
    fall on the same instants as in the whole recording resampled, and the resampler's edge effects
    stay in the margin.

    Args:
        samples: mono float32 at ``sample_rate``.
        spans_s: (start, end) in seconds, within the recording.

    Returns:
        One float32 array per span: ``resample(samples)[int(start * target) : int(end * target)]``.
    """
    from math import gcd

    x = np.asarray(samples, dtype=np.float32)
    if sample_rate == target_rate:
        return [x[int(a * target_rate) : int(b * target_rate)] for a, b in spans_s]
    step = sample_rate // gcd(sample_rate, target_rate)  # source samples between instants both rates share
    out = []
    for start, end in spans_s:
        a0 = max(0, int((start - margin_s) * sample_rate)) // step * step
        a1 = min(len(x), int(np.ceil((end + margin_s) * sample_rate)))
        if a1 >= len(x) - step:  # reaching the end: resample to it, as the whole recording would be
            a1 = len(x)
        part = resample(x[a0:a1], sample_rate, target_rate)
        t0 = a0 * target_rate // sample_rate
        out.append(part[int(start * target_rate) - t0 : int(end * target_rate) - t0])
    return out


def at_rate(audio: Audio, target_rate: int) -> Audio:
    """The same audio resampled to ``target_rate`` (band and provenance kept)."""
    from dataclasses import replace

    if audio.sample_rate == target_rate:
        return audio
    return replace(audio, samples=resample(audio.samples, audio.sample_rate, target_rate), sample_rate=target_rate)
