"""Tests for voicecheck.channel (telephone band, G.711) on generated signals."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from voicecheck import channel
from voicecheck.errors import UsageError


def tone(freq_hz: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-30))


# --- telephone_band ----------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [16000, 44100])
def test_band_passes_1khz_and_removes_5khz(sample_rate: int) -> None:
    # out_rate == sample_rate: the 5 kHz tone must be removed by the band-pass itself,
    # not only by resampling to 8 kHz.
    passed = channel.telephone_band(tone(1000, sample_rate, 1.0), sample_rate, out_rate=16000)
    blocked = channel.telephone_band(tone(5000, sample_rate, 1.0), sample_rate, out_rate=16000)
    low = channel.telephone_band(tone(100, sample_rate, 1.0), sample_rate, out_rate=16000)
    reference = power_db(tone(1000, sample_rate, 1.0))
    edge = 16000 // 10
    assert abs(power_db(passed[edge:-edge]) - reference) < 1.0
    assert power_db(blocked[edge:-edge]) < reference - 40.0
    assert power_db(low[edge:-edge]) < reference - 40.0


def test_band_output_rate_length_and_dtype() -> None:
    out = channel.telephone_band(tone(1000, 16000, 3.0), 16000)
    assert out.dtype == np.float32
    assert out.ndim == 1
    assert abs(out.size - 3 * 8000) <= 1
    out44 = channel.telephone_band(tone(1000, 44100, 2.0), 44100, out_rate=8000)
    assert abs(out44.size - 2 * 8000) <= 1


def test_band_keeps_timing() -> None:
    # Zero-phase filtering: a burst stays where it was after band-limiting and resampling.
    x = np.zeros(16000 * 2, dtype=np.float32)
    x[16000 : 16000 + 4000] = tone(1000, 16000, 0.25)
    y = channel.telephone_band(x, 16000)
    envelope = np.abs(y)
    onset = int(np.argmax(envelope > 0.1)) / 8000
    assert abs(onset - 1.0) < 0.01


def test_band_handles_very_short_input() -> None:
    out = channel.telephone_band(np.ones(5, dtype=np.float32) * 0.1, 16000)
    assert out.dtype == np.float32
    assert out.size in (2, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples": np.zeros(0), "sample_rate": 16000}, "empty"),
        ({"samples": np.zeros(100), "sample_rate": 0}, "sample_rate"),
        ({"samples": np.zeros(100), "sample_rate": -16000}, "sample_rate"),
        ({"samples": np.zeros(100), "sample_rate": 16000, "out_rate": 0}, "out_rate"),
        ({"samples": np.zeros((100, 2)), "sample_rate": 16000}, "mono"),
        ({"samples": np.zeros(100), "sample_rate": 6000}, "band"),
        (
            {
                "samples": np.zeros(100),
                "sample_rate": 16000,
                "low_hz": 500,
                "high_hz": 400,
            },
            "band",
        ),
        ({"samples": np.array([0.0, np.nan]), "sample_rate": 16000}, "NaN"),
    ],
)
def test_band_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        channel.telephone_band(**kwargs)


# --- G.711 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [channel.mu_law, channel.a_law])
def test_codec_round_trip_error_small_but_nonzero(codec) -> None:
    x = tone(440, 8000, 1.0, amplitude=0.5)
    y = codec(x)
    assert y.dtype == np.float32
    assert y.shape == x.shape
    error = y - x
    assert np.any(error != 0.0)
    snr = power_db(x) - power_db(error)
    assert 30.0 < snr < 45.0  # 8-bit companding gives roughly 38 dB on a loud tone
    # Quantisation error is relative: small signals get small steps.
    quiet = tone(440, 8000, 1.0, amplitude=0.005)
    assert np.max(np.abs(codec(quiet) - quiet)) < 0.0005
    # Decoded values are already on the code grid.
    np.testing.assert_array_equal(codec(y), y)


@pytest.mark.parametrize("codec", [channel.mu_law, channel.a_law])
def test_codec_has_at_most_256_levels(codec) -> None:
    x = np.linspace(-1.0, 1.0, 200_000)
    levels = np.unique(codec(x))
    assert 200 < levels.size <= 256


@pytest.mark.parametrize(("codec", "subtype"), [(channel.mu_law, "ULAW"), (channel.a_law, "ALAW")])
def test_codec_agrees_with_libsndfile(codec, subtype: str) -> None:
    # Every 16-bit value through libsndfile's G.711 codec and ours.
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, 8000, subtype=subtype, format="WAV")
    buffer.seek(0)
    theirs, _ = sf.read(buffer, dtype="int16")
    ours = np.round(codec(pcm / 32768.0) * 32768.0).astype(np.int64)
    differ = ours != theirs.astype(np.int64)
    # A-law conventions differ on the exact boundaries of negative segments only.
    assert differ.mean() < 0.005
    if differ.any():
        assert np.max(np.abs(ours[differ] - theirs[differ])) <= 1024


def test_codec_clips_out_of_range() -> None:
    y = channel.mu_law(np.array([2.0, -2.0, 0.0]))
    assert np.all(np.abs(y) <= 1.0)
    assert y[0] > 0.9 and y[1] < -0.9 and y[2] == 0.0
