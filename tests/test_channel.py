"""Tests for voicecheck.channel on generated signals (tones, noise, silence)."""

from __future__ import annotations

import io
import itertools

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


def burst_signal(sample_rate: int, rng: np.random.Generator, seconds: float = 6.0) -> np.ndarray:
    """Speech-like stand-in: 1 s bursts of band-limited noise separated by 0.5 s pauses."""
    out = np.zeros(int(sample_rate * seconds), dtype=np.float32)
    burst = int(sample_rate * 1.0)
    for start in range(0, out.size - burst, int(sample_rate * 1.5)):
        envelope = np.hanning(burst)
        carrier = tone(rng.uniform(200, 1500), sample_rate, 1.0, 0.3)
        out[start : start + burst] = carrier * envelope + 0.05 * rng.standard_normal(burst)
    return out


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


# --- noise -------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [5.0, 15.0, 30.0])
def test_add_noise_hits_snr_on_active_speech(snr_db: float) -> None:
    rng = np.random.default_rng(1)
    x = burst_signal(8000, rng)
    active = channel.active_power(x)
    y = channel.add_noise(x, snr_db, np.random.default_rng(2))
    noise = y.astype(np.float64) - x
    measured = 10 * np.log10(active / np.mean(noise**2))
    assert abs(measured - snr_db) < 1.0
    # Pauses do not dilute the reference: the plain mean power would give a lower SNR.
    assert channel.active_power(x) > 1.2 * np.mean(x.astype(np.float64) ** 2)


def test_add_noise_is_deterministic_and_pinkish() -> None:
    x = tone(1000, 8000, 4.0, 0.3)
    a = channel.add_noise(x, 10.0, np.random.default_rng(5)) - x
    b = channel.add_noise(x, 10.0, np.random.default_rng(5)) - x
    c = channel.add_noise(x, 10.0, np.random.default_rng(6)) - x
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    spectrum = np.abs(np.fft.rfft(a.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(a.size, 1 / 8000)
    low = spectrum[(freqs > 100) & (freqs < 400)].mean()
    high = spectrum[(freqs > 2000) & (freqs < 3000)].mean()
    assert low > 3 * high  # more energy at low frequencies, like 1/f noise


def test_add_noise_on_silence_needs_reference() -> None:
    silence = np.zeros(8000, dtype=np.float32)
    with pytest.raises(UsageError, match="silent"):
        channel.add_noise(silence, 20.0, np.random.default_rng(0))
    y = channel.add_noise(
        silence,
        20.0,
        np.random.default_rng(0),
        reference_power=channel.NOMINAL_SPEECH_POWER,
    )
    assert abs(power_db(y) - (-26.0 - 20.0)) < 1.0


def test_add_noise_rejects_bad_snr() -> None:
    with pytest.raises(UsageError, match="snr_db"):
        channel.add_noise(tone(440, 8000, 0.5), float("nan"), np.random.default_rng(0))


# --- call sides and calls ----------------------------------------------------------------------


def test_simulate_call_side_rate_and_range() -> None:
    rng = np.random.default_rng(3)
    x = burst_signal(16000, rng, seconds=3.0)
    y = channel.simulate_call_side(x, 16000, rng)
    assert y.dtype == np.float32
    assert abs(y.size - 3 * 8000) <= 1
    assert np.all(np.abs(y) <= 1.0)
    # The codec leaves values on the mu-law grid.
    np.testing.assert_array_equal(channel.mu_law(y), y)
    # A silent line still gets (quiet) line noise.
    quiet = channel.simulate_call_side(np.zeros(16000), 16000, rng, snr_db=20.0)
    assert -60.0 < power_db(quiet) < -35.0


def test_simulate_call_side_rejects_unknown_codec() -> None:
    with pytest.raises(UsageError, match="codec"):
        channel.simulate_call_side(tone(440, 16000, 0.5), 16000, np.random.default_rng(0), codec="gsm")  # type: ignore[arg-type]


@pytest.mark.parametrize("customer_channel", [0, 1])
def test_make_call_puts_customer_on_its_channel(customer_channel: int) -> None:
    rng = np.random.default_rng(7)
    customer = burst_signal(16000, rng, seconds=9.0)
    collector = tone(600, 16000, 4.0, 0.2)
    call, turns = channel.make_call_with_turns(
        customer,
        collector,
        16000,
        np.random.default_rng(8),
        customer_channel=customer_channel,
    )
    assert call.dtype == np.float32
    assert call.ndim == 2 and call.shape[1] == 2
    # Both sides plus at least 0.3 s per gap, at 8 kHz.
    assert call.shape[0] >= (9.0 + 4.0) * 8000
    other = 1 - customer_channel
    assert {t.channel for t in turns if t.role == "customer"} == {customer_channel}
    assert {t.channel for t in turns if t.role == "collector"} == {other}
    assert turns[0].role == "collector"
    roles = [t.role for t in turns]
    assert any(a != b for a, b in itertools.pairwise(roles))  # the sides take turns

    # While the customer talks the collector's channel is near-silent, and vice versa.
    for turn in turns:
        a, b = int(turn.start_s * 8000), int(turn.end_s * 8000)
        talking, listening = call[a:b, turn.channel], call[a:b, 1 - turn.channel]
        assert power_db(talking) > power_db(listening) + 8.0
    # Turns do not overlap and fit inside the call.
    for first, second in itertools.pairwise(turns):
        assert second.start_s >= first.end_s + 0.3 - 1e-9
    assert turns[-1].end_s <= call.shape[0] / 8000 + 1e-6
    # The customer channel carries the customer's energy.
    assert power_db(call[:, customer_channel]) > power_db(call[:, other]) - 10.0
    customer_spectrum = np.abs(np.fft.rfft(call[:, customer_channel].astype(np.float64)))
    freqs = np.fft.rfftfreq(call.shape[0], 1 / 8000)
    at_600 = customer_spectrum[np.abs(freqs - 600) < 2].max()
    collector_spectrum = np.abs(np.fft.rfft(call[:, other].astype(np.float64)))
    assert collector_spectrum[np.abs(freqs - 600) < 2].max() > 10 * at_600


def test_make_call_turns_cover_all_customer_audio() -> None:
    rng = np.random.default_rng(9)
    customer = burst_signal(16000, rng, seconds=12.0)
    _, turns = channel.make_call_with_turns(customer, tone(500, 16000, 3.0, 0.2), 16000, np.random.default_rng(1))
    mine = [t for t in turns if t.role == "customer"]
    assert len(mine) >= 2
    assert mine[0].source_start_s == 0.0
    total = sum(t.end_s - t.start_s for t in mine)
    assert abs(total - 12.0) < 1e-6
    for first, second in itertools.pairwise(mine):
        assert abs(second.source_start_s - (first.source_start_s + first.end_s - first.start_s)) < 1e-6


def test_make_call_is_deterministic_with_seed() -> None:
    customer = burst_signal(16000, np.random.default_rng(0), seconds=5.0)
    collector = tone(500, 16000, 2.0, 0.2)
    a = channel.make_call(customer, collector, 16000, np.random.default_rng(42))
    b = channel.make_call(customer, collector, 16000, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)


def test_make_call_with_silent_customer() -> None:
    call = channel.make_call(np.zeros(16000 * 5), tone(500, 16000, 3.0, 0.2), 16000, np.random.default_rng(0))
    assert power_db(call[:, 1]) < -35.0
    assert power_db(call[:, 0]) > -30.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"customer": np.zeros(0)}, "customer"),
        ({"collector": np.zeros(0)}, "collector"),
        ({"customer_channel": 2}, "customer_channel"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 4000}, "8000"),
    ],
)
def test_make_call_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {
        "customer": tone(300, 16000, 1.0),
        "collector": tone(500, 16000, 1.0),
        "sample_rate": 16000,
        "rng": np.random.default_rng(0),
    }
    arguments.update(kwargs)
    with pytest.raises(UsageError, match=message):
        channel.make_call(**arguments)


# --- write_call --------------------------------------------------------------------------------


def test_write_call_round_trip(tmp_path) -> None:
    call = channel.make_call(tone(300, 16000, 2.0), tone(500, 16000, 1.0), 16000, np.random.default_rng(0))
    path = channel.write_call(tmp_path / "sub" / "call.wav", call)
    info = sf.info(str(path))
    assert info.subtype == "ULAW"
    assert info.format == "WAV"
    assert info.samplerate == 8000
    assert info.channels == 2
    assert info.frames == call.shape[0]
    back, rate = sf.read(str(path), dtype="float32")
    assert rate == 8000
    assert back.shape == call.shape
    assert np.max(np.abs(back - call)) < 0.04  # one mu-law step at most


def test_write_call_rejects_bad_input(tmp_path) -> None:
    with pytest.raises(UsageError, match="shape"):
        channel.write_call(tmp_path / "a.wav", np.zeros((0, 2)))
    with pytest.raises(UsageError, match="sample_rate"):
        channel.write_call(tmp_path / "a.wav", np.zeros((10, 2)), sample_rate=0)
    with pytest.raises(UsageError, match="subtype"):
        channel.write_call(tmp_path / "a.wav", np.zeros((10, 2)), subtype="VORBIS")
