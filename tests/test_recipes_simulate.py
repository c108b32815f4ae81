"""Tests for recipes.simulate (line noise, call sides, stereo calls, WAV files) on generated signals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf

from recipes import simulate
from voicecheck.channel import mu_law
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


# --- noise -------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [5.0, 15.0, 30.0])
def test_add_noise_hits_snr_on_active_speech(snr_db: float) -> None:
    rng = np.random.default_rng(1)
    x = burst_signal(8000, rng)
    active = simulate.active_power(x)
    y = simulate.add_noise(x, snr_db, np.random.default_rng(2))
    noise = y.astype(np.float64) - x
    measured = 10 * np.log10(active / np.mean(noise**2))
    assert abs(measured - snr_db) < 1.0
    # Pauses do not dilute the reference: the plain mean power would give a lower SNR.
    assert simulate.active_power(x) > 1.2 * np.mean(x.astype(np.float64) ** 2)


def test_add_noise_is_deterministic_and_pinkish() -> None:
    x = tone(1000, 8000, 4.0, 0.3)
    a = simulate.add_noise(x, 10.0, np.random.default_rng(5)) - x
    b = simulate.add_noise(x, 10.0, np.random.default_rng(5)) - x
    c = simulate.add_noise(x, 10.0, np.random.default_rng(6)) - x
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
        simulate.add_noise(silence, 20.0, np.random.default_rng(0))
    y = simulate.add_noise(
        silence,
        20.0,
        np.random.default_rng(0),
        reference_power=simulate.NOMINAL_SPEECH_POWER,
    )
    assert abs(power_db(y) - (-26.0 - 20.0)) < 1.0


def test_add_noise_rejects_bad_snr() -> None:
    with pytest.raises(UsageError, match="snr_db"):
        simulate.add_noise(tone(440, 8000, 0.5), float("nan"), np.random.default_rng(0))


# --- call sides and calls ----------------------------------------------------------------------


def test_simulate_call_side_rate_and_range() -> None:
    rng = np.random.default_rng(3)
    x = burst_signal(16000, rng, seconds=3.0)
    y = simulate.simulate_call_side(x, 16000, rng)
    assert y.dtype == np.float32
    assert abs(y.size - 3 * 8000) <= 1
    assert np.all(np.abs(y) <= 1.0)
    # The codec leaves values on the mu-law grid.
    np.testing.assert_array_equal(mu_law(y), y)
    # A silent line still gets (quiet) line noise.
    quiet = simulate.simulate_call_side(np.zeros(16000), 16000, rng, snr_db=20.0)
    assert -60.0 < power_db(quiet) < -35.0


def test_simulate_call_side_rejects_unknown_codec() -> None:
    with pytest.raises(UsageError, match="codec"):
        simulate.simulate_call_side(tone(440, 16000, 0.5), 16000, np.random.default_rng(0), codec="gsm")  # type: ignore[arg-type]


@pytest.mark.parametrize("customer_channel", [0, 1])
def test_make_call_puts_customer_on_its_channel(customer_channel: int) -> None:
    rng = np.random.default_rng(7)
    customer = burst_signal(16000, rng, seconds=9.0)
    collector = tone(600, 16000, 4.0, 0.2)
    call, turns = simulate.make_call_with_turns(
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
    _, turns = simulate.make_call_with_turns(customer, tone(500, 16000, 3.0, 0.2), 16000, np.random.default_rng(1))
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
    a = simulate.make_call(customer, collector, 16000, np.random.default_rng(42))
    b = simulate.make_call(customer, collector, 16000, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)


def test_make_call_with_silent_customer() -> None:
    call = simulate.make_call(np.zeros(16000 * 5), tone(500, 16000, 3.0, 0.2), 16000, np.random.default_rng(0))
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
        simulate.make_call(**arguments)


# --- write_call --------------------------------------------------------------------------------


def test_write_call_round_trip(tmp_path) -> None:
    call = simulate.make_call(tone(300, 16000, 2.0), tone(500, 16000, 1.0), 16000, np.random.default_rng(0))
    path = simulate.write_call(tmp_path / "sub" / "call.wav", call)
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
        simulate.write_call(tmp_path / "a.wav", np.zeros((0, 2)))
    with pytest.raises(UsageError, match="sample_rate"):
        simulate.write_call(tmp_path / "a.wav", np.zeros((10, 2)), sample_rate=0)
    with pytest.raises(UsageError, match="subtype"):
        simulate.write_call(tmp_path / "a.wav", np.zeros((10, 2)), subtype="VORBIS")
