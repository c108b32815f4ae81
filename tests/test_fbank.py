"""Kaldi fbank in numpy (voicecheck.fbank) against the two references the toolkits use:
torchaudio.compliance.kaldi.fbank (what WeSpeaker's and 3D-Speaker's recipes call; pure torch) and
kaldi-native-fbank (sherpa-onnx's C++ port of Kaldi's code), on generated signals and a real clip."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes import SPEECH, chord, noise, silence, tone
from voicecheck.audio import load, resample
from voicecheck.errors import UsageError
from voicecheck.fbank import Fbank, FbankOptions, mel_banks, window_function

TOLERANCE = 5e-3
"""Largest difference allowed in a log mel energy (natural log; float32 rounding gives ~1e-3)."""

RECIPES = {
    "3d-speaker": {"window_type": "povey", "sample_scale": 1.0},
    "wespeaker": {"window_type": "hamming", "sample_scale": 32768.0},
}


def _signals(rate: int) -> dict[str, np.ndarray]:
    clip = load(SPEECH / "vctk_autovc" / "p225" / "p225_003.flac")
    speech = resample(clip.samples, clip.sample_rate, rate)[: 3 * rate]
    return {
        "speech": speech.astype(np.float32),
        "chord": chord((300, 700, 1900), 1.3, rate),
        "noise": noise(1.3, rate, 0.05),
        "quiet": noise(1.0, rate, 1e-6, seed=3),
        "silence": silence(0.5, rate),
    }


def _torchaudio(x: np.ndarray, rate: int, window_type: str, sample_scale: float) -> np.ndarray:
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    import torch

    wave = torch.from_numpy(np.asarray(x, np.float32) * np.float32(sample_scale))[None]
    return kaldi.fbank(
        wave,
        num_mel_bins=80,
        frame_length=25,
        frame_shift=10,
        dither=0.0,
        energy_floor=0.0,
        sample_frequency=rate,
        window_type=window_type,
        use_energy=False,
    ).numpy()


def _kaldi_native(x: np.ndarray, rate: int, window_type: str, sample_scale: float) -> np.ndarray:
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = rate
    opts.frame_opts.window_type = window_type
    opts.mel_opts.num_bins = 80
    opts.energy_floor = 0.0
    opts.use_energy = False
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(rate, (np.asarray(x, np.float64) * sample_scale).tolist())
    fb.input_finished()
    return np.stack([np.asarray(fb.get_frame(i)) for i in range(fb.num_frames_ready)])


@pytest.mark.parametrize("reference", [_torchaudio, _kaldi_native], ids=["torchaudio", "kaldi-native-fbank"])
@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("rate", [8000, 16000])
def test_matches_the_references(reference, recipe: str, rate: int) -> None:
    settings = RECIPES[recipe]
    ours = Fbank(rate, FbankOptions(cmn=False, **settings))
    for name, x in _signals(rate).items():
        got = ours(x)
        want = reference(x, rate, settings["window_type"], settings["sample_scale"])
        assert got.shape == want.shape == (ours.num_frames(len(x)), 80), name
        assert np.max(np.abs(got - want)) < TOLERANCE, (name, float(np.max(np.abs(got - want))))


def test_frames_and_shapes() -> None:
    fb = Fbank(16000)
    assert (fb.frame_samples, fb.shift_samples, fb.fft_size) == (400, 160, 512)
    assert Fbank(8000).fft_size == 256
    assert fb.num_frames(399) == 0 and fb.num_frames(400) == 1 and fb.num_frames(16000) == 98
    batch = np.stack([tone(200, 1.0), noise(1.0)])
    out = fb(batch)
    assert out.shape == (2, 98, 80) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], fb(noise(1.0)), atol=1e-5)  # a row does not depend on its batch


def test_cmn_removes_each_bins_mean_and_the_level() -> None:
    fb = Fbank(16000)
    x = chord((250, 900, 2500), 1.5) + noise(1.5, amplitude=0.05)
    out = fb(x)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    # a level change adds a constant to every log energy, which CMN takes out (away from the log floor)
    np.testing.assert_allclose(fb(0.5 * x), out, atol=2e-3)
    # WeSpeaker's int16 scale against 3D-Speaker's [-1, 1]: the same after CMN except where energies near
    # the log floor (the lowest bins, which DC removal and pre-emphasis empty; digital near-silence)
    int16_scale = Fbank(16000, FbankOptions(window_type="hamming", sample_scale=32768.0))
    unit_scale = Fbank(16000, FbankOptions(window_type="hamming"))
    assert np.median(np.abs(int16_scale(x) - unit_scale(x))) < 1e-4
    quiet = noise(1.0, amplitude=1e-5)
    assert np.max(np.abs(int16_scale(quiet) - unit_scale(quiet))) > 0.1


def test_a_tone_peaks_in_its_mel_bin() -> None:
    fb = Fbank(16000, FbankOptions(cmn=False))
    centres = [1000.0, 3000.0]
    peaks = [int(np.argmax(fb(tone(f, 1.0)).mean(axis=0))) for f in centres]
    assert peaks[0] < peaks[1]
    banks = mel_banks(80, 512, 16000, 20.0, 0.0)
    freqs = np.arange(257) * 16000 / 512
    for f, peak in zip(centres, peaks, strict=True):
        assert abs(freqs[int(np.argmax(banks[peak]))] - f) < 150


def test_windows_and_filters() -> None:
    povey, hamming = window_function("povey", 400), window_function("hamming", 400)
    assert povey[0] == pytest.approx(0.0) and povey[-1] == pytest.approx(0.0)
    assert hamming[0] == pytest.approx(0.08) and np.max(hamming) == pytest.approx(1.0, abs=1e-4)
    banks = mel_banks(80, 512, 16000, 20.0, 0.0)
    assert banks.shape == (80, 257) and np.all(banks >= 0) and np.all(banks[:, -1] == 0)
    assert np.all(banks.max(axis=1) > 0.3)  # every filter covers some FFT bins


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window_type": "blackman"}, "window_type"),
        ({"num_mel_bins": 2}, "num_mel_bins"),
        ({"frame_shift_ms": float("nan")}, "frame_shift_ms"),
        ({"cmn": "yes"}, "cmn"),
        ({"sample_scale": 0.0}, "sample_scale"),
    ],
)
def test_bad_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        FbankOptions(**options)


def test_bad_edges_and_too_short_input() -> None:
    with pytest.raises(UsageError, match="do not fit"):
        Fbank(8000, FbankOptions(high_freq_hz=6000.0))
    with pytest.raises(UsageError, match="shorter than one fbank frame"):
        Fbank(16000)(np.zeros(100, np.float32))
