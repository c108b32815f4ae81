"""Deterministic stand-ins for the model and the VAD, and generated test signals.

``FakeEmbedder`` is registered as backend ``fake`` (:func:`voicecheck.embedders.register_backend`,
done when this module is imported), so a workspace ``models.toml`` entry

    [fake]
    backend = "fake"
    name = "fake-bands"

makes ``--model fake`` work in the CLI and in spawned batch workers (they receive the parent's
registrations). A CLI subprocess runs ``python -m tests.fake_cli`` (run pytest from the repo root).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from voicecheck.embedders import register_backend, spec_kwargs
from voicecheck.types import SpeechRegion

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
SPEECH = SAMPLES / "speech"


class FakeEmbedder:
    """Spectral band energies as an "embedding": the same signal gives the same vector, tones of
    different pitch give near-orthogonal vectors. Cosines lie in [0, 1] (non-negative entries).

    Args:
        counter: when set, every ``embed_batch`` call appends one line (the number of windows) to
            this file, so tests can count model work across processes.
        delay_s: seconds every ``embed_batch`` call sleeps, standing in for a real model's time
            (the crash test needs a batch that is still running when it kills it).
    """

    def __init__(
        self,
        name: str = "fake-bands",
        device: str = "cpu",
        sample_rate: int = 16000,
        dimension: int = 32,
        min_speech_s: float = 1.0,
        window_s: float = 1.0,
        hop_s: float = 0.5,
        counter: str = "",
        delay_s: float = 0.0,
    ) -> None:
        self.name = name
        self.device = device
        self.sample_rate = int(sample_rate) or 16000
        self.dimension = int(dimension) or 32
        self.min_speech_s = float(min_speech_s)
        self.window_s = float(window_s)
        self.hop_s = float(hop_s)
        self.counter = counter
        self.delay_s = float(delay_s)
        win = int(round(self.window_s * self.sample_rate))
        freqs = np.fft.rfftfreq(win, 1.0 / self.sample_rate)
        edges = np.geomspace(60.0, self.sample_rate / 2, self.dimension + 1)
        self._band = np.clip(np.searchsorted(edges, freqs, side="right") - 1, -1, self.dimension)

    @classmethod
    def from_spec(cls, spec: object, root: Path, device: str, precision: str) -> FakeEmbedder:
        if precision == "bf16":
            from voicecheck.errors import UsageError

            raise UsageError("precision 'bf16' is available for the ge2e backend only, not fake; use auto or fp32")
        return cls(**spec_kwargs(spec, device), sample_rate=spec.sample_rate, dimension=spec.dimension)  # type: ignore[arg-type, attr-defined]

    def embed_batch(self, windows: np.ndarray) -> np.ndarray:
        """(n, window_samples) float32 -> (n, dimension) unit-norm float32."""
        x = np.asarray(windows, dtype=np.float64)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.counter:
            with open(self.counter, "a", encoding="utf-8") as f:
                f.write(f"{len(x)}\n")
        power = np.abs(np.fft.rfft(x * np.hanning(x.shape[1]), axis=1)) ** 2
        out = np.full((len(x), self.dimension), 1e-9)
        inside = (self._band >= 0) & (self._band < self.dimension)
        for b in range(self.dimension):
            sel = inside & (self._band == b)
            if sel.any():
                out[:, b] += power[:, sel].sum(axis=1)
        v = np.sqrt(out)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


register_backend("fake", "tests.fakes:FakeEmbedder")


class EnergyVad:
    """Frames whose RMS is above ``threshold`` (linear, full scale 1.0) are speech."""

    def __init__(self, threshold: float = 0.01, frame_s: float = 0.02) -> None:
        self.threshold = threshold
        self.frame_s = frame_s

    def regions(self, samples: np.ndarray, sample_rate: int) -> list[SpeechRegion]:
        n = max(1, int(round(self.frame_s * sample_rate)))
        frames = len(samples) // n
        if frames == 0:
            return []
        rms = np.sqrt(np.mean(np.asarray(samples[: frames * n], np.float64).reshape(frames, n) ** 2, axis=1))
        active = rms > self.threshold
        regions: list[SpeechRegion] = []
        start = None
        for i, on in enumerate([*active, False]):
            if on and start is None:
                start = i
            elif not on and start is not None:
                regions.append(SpeechRegion(start * n / sample_rate, i * n / sample_rate))
                start = None
        return regions


# -- signals -------------------------------------------------------------------------------------


def tone(freq_hz: float, seconds: float, sample_rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    """A sine, float32, shape (round(seconds * sample_rate),)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def chord(freqs_hz: tuple[float, ...], seconds: float, sample_rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    """Sum of sines scaled to peak ``amplitude`` (a crude "voice" for the fake embedder)."""
    x = sum(tone(f, seconds, sample_rate, 1.0) for f in freqs_hz)
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def noise(seconds: float, sample_rate: int = 16000, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
    """White Gaussian noise, float32."""
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(int(round(seconds * sample_rate)))).astype(np.float32)


def syllables(seconds: float, seed: int, rate: int = 8000) -> np.ndarray:
    """Generated voiced "syllables": harmonic complexes with gliding pitch (90-250 Hz) and random
    harmonic amplitudes, short pauses and a little noise. Not speech, but built like it."""
    rng = np.random.default_rng(seed)
    out = []
    while sum(map(len, out)) < seconds * rate:
        n = int(rng.uniform(0.12, 0.35) * rate)
        phase = 2 * np.pi * np.cumsum(np.linspace(*rng.uniform(90, 250, 2), n)) / rate
        amps = rng.uniform(0.0, 1.0, 30) ** 2
        y = sum(a * np.sin(k * phase) for k, a in enumerate(amps, start=1))
        out.append((0.05 * y * np.hanning(n)).astype(np.float32))
        out.append(np.zeros(int(rng.uniform(0.0, 0.1) * rate), np.float32))
    x = np.concatenate(out)[: int(seconds * rate)]
    return x + rng.standard_normal(x.size).astype(np.float32) * 0.002


def silence(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    return np.zeros(int(round(seconds * sample_rate)), dtype=np.float32)


def write(path: Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16", fmt: str | None = None) -> Path:
    """Write mono (n,) or multi-channel (n, channels) audio; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sample_rate, subtype=subtype, format=fmt)
    return path


def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two channels, shape (n, 2), padded with zeros to the longer one."""
    n = max(len(left), len(right))
    out = np.zeros((n, 2), dtype=np.float32)
    out[: len(left), 0], out[: len(right), 1] = left, right
    return out


def peak_hz(samples: np.ndarray, sample_rate: int) -> float:
    """Frequency of the strongest spectral peak."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / sample_rate)[int(np.argmax(spectrum))])


def counted(counter: Path) -> int:
    """Number of ``embed_batch`` calls a FakeEmbedder recorded in ``counter``."""
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def workspace(root: Path, counter: Path | None = None, extra: str = "", delay_s: float = 0.0) -> Path:
    """An embeddings workspace whose models.toml has the fake model(s); returns its directory.

    Keys: ``fake`` (name "fake-bands") and ``fake2`` (name "fake-bands-b", same maths, another model id).
    ``delay_s`` slows the ``fake`` model's every ``embed_batch`` call (see :class:`FakeEmbedder`).
    """
    emb = root / "embeddings"
    emb.mkdir(parents=True, exist_ok=True)
    count = f'counter = "{counter}"\n' if counter else ""
    count += f"delay_s = {delay_s}\n" if delay_s else ""
    (emb / "models.toml").write_text(
        '[fake]\nbackend = "fake"\nname = "fake-bands"\nsample_rate = 16000\n'
        f"dimension = 32\nmin_speech_s = 1.0\nwindow_s = 1.0\nhop_s = 0.5\n{count}\n"
        '[fake2]\nbackend = "fake"\nname = "fake-bands-b"\nmin_speech_s = 1.0\n'
        f"window_s = 1.0\nhop_s = 0.5\n{extra}",
        encoding="utf-8",
    )
    return emb


def env_without_workspace() -> dict[str, str]:
    """os.environ minus VOICECHECK_* so a developer's own settings do not leak into a test; the test's
    encryption key (set for every test by conftest) is kept."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VOICECHECK_") or k == "VOICECHECK_KEY"}


NO_REPLAY = "replay = false\n"
"""voicecheck.toml line for tests of other features: their generated "voices" are steady chords, and
the same chord in an enrollment and a call IS the same audio recurring, which the replay check
(rightly) flags. The replay tests (tests/test_replaycheck.py) use signals built like speech."""


PNG = b"\x89PNG\r\n\x1a\n"


def assert_error(res, code: int, *needles: str) -> None:
    """The CLI failed with ``code`` and one clear error line holding every needle, no traceback."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("voicecheck: error:")]
    assert len(errors) == 1, res.output
    for n in needles:
        assert n in errors[0], errors[0]
