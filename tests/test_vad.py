"""voicecheck.vad with the real silero-vad on generated signals and a real clip, plus the helpers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes import SPEECH, EnergyVad, FakeEmbedder, noise, silence, stereo, tone, write
from voicecheck.audio import load
from voicecheck.config import Settings
from voicecheck.errors import InsufficientSpeechError
from voicecheck.pipeline import Engine
from voicecheck.types import SpeechRegion
from voicecheck.vad import collect, recording_time, speech_seconds

CLIP = SPEECH / "vctk_autovc" / "p225" / "p225_003.flac"


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_digital_silence_has_no_speech(silero, rate: int) -> None:
    assert silero.regions(silence(3.0, rate), rate) == []


@pytest.mark.parametrize(
    "signal",
    [tone(440, 4.0), tone(1000, 4.0, amplitude=0.9), noise(4.0, amplitude=0.1), noise(4.0, amplitude=0.001, seed=1)],
    ids=["tone440", "loud-tone1k", "white-noise", "faint-noise"],
)
def test_tones_and_noise_are_little_or_no_speech(silero, signal: np.ndarray) -> None:
    assert speech_seconds(silero.regions(signal, 16000)) < 0.5


def test_real_speech_is_found(silero) -> None:
    audio = load(CLIP)
    regions = silero.regions(audio.samples, audio.sample_rate)
    assert speech_seconds(regions) > 0.6 * audio.duration_s
    assert all(0 <= r.start_s < r.end_s <= audio.duration_s + 0.1 for r in regions)
    assert all(a.end_s <= b.start_s for a, b in zip(regions, regions[1:], strict=False))


def test_speech_is_found_at_other_rates(silero) -> None:
    """The VAD resamples anything but 8/16 kHz; times stay in the recording's seconds."""
    from voicecheck.audio import resample

    audio = load(CLIP)
    at_16k = speech_seconds(silero.regions(audio.samples, 16000))
    for rate in (8000, 44100):
        x = resample(audio.samples, 16000, rate)
        assert speech_seconds(silero.regions(x, rate)) == pytest.approx(at_16k, abs=1.0)


def test_speech_after_silence_is_placed_in_time(silero) -> None:
    audio = load(CLIP)
    x = np.concatenate([silence(3.0), audio.samples])
    regions = silero.regions(x, 16000)
    assert regions and regions[0].start_s > 2.5


def test_too_little_speech_is_insufficient(silero, tmp_path) -> None:
    """1.5 s of real speech is below the minimum -> InsufficientSpeechError with the seconds found."""
    audio = load(CLIP)
    path = write(tmp_path / "short.wav", np.concatenate([silence(1.0), audio.samples[: int(1.5 * 16000)]]), 16000)
    engine = Engine(Settings(), embedder=FakeEmbedder(min_speech_s=3.0), vad=silero)
    with pytest.raises(InsufficientSpeechError) as info:
        engine.embed_call(path, None)
    assert 0.5 < info.value.speech_seconds < 3.0


def test_silent_customer_channel_is_insufficient(silero, tmp_path) -> None:
    audio = load(CLIP)
    path = write(tmp_path / "call.wav", stereo(audio.samples, silence(audio.duration_s)), 16000)
    engine = Engine(Settings(), embedder=FakeEmbedder(), vad=silero)
    with pytest.raises(InsufficientSpeechError) as info:
        engine.embed_call(path, 1)
    assert info.value.speech_seconds == 0.0
    assert engine.embed_call(path, 0).speech_seconds > 3.0  # the agent side does have speech


def test_speech_seconds_and_collect() -> None:
    rate = 100
    x = np.arange(1000, dtype=np.float32)
    regions = [SpeechRegion(1.0, 2.0), SpeechRegion(5.0, 5.5)]
    assert speech_seconds(regions) == pytest.approx(1.5)
    got = collect(x, rate, regions)
    assert got.dtype == np.float32 and len(got) == 150
    assert got[0] == 100 and got[100] == 500
    assert len(collect(x, rate, [])) == 0


def test_recording_time_maps_offsets_back() -> None:
    regions = [SpeechRegion(1.0, 2.0), SpeechRegion(5.0, 5.5)]
    got = recording_time(np.array([0.0, 0.5, 1.0, 1.25]), regions)
    np.testing.assert_allclose(got, [1.0, 1.5, 5.0, 5.25])
    np.testing.assert_allclose(recording_time(0.3, []), [0.3])


def test_energy_vad_finds_the_loud_part() -> None:
    x = np.concatenate([silence(1.0), tone(440, 2.0), silence(1.0)])
    regions = EnergyVad().regions(x, 16000)
    assert len(regions) == 1
    assert regions[0].start_s == pytest.approx(1.0, abs=0.03)
    assert regions[0].end_s == pytest.approx(3.0, abs=0.03)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_sequence_runtime_is_silero_streaming(rate: int) -> None:
    """The default runtime (feature stack batched, LSTM over the sequence) gives silero's own
    chunk-by-chunk probabilities and regions, and the streaming path gives exactly what silero's
    ``get_speech_timestamps`` gives."""
    import torch
    from silero_vad import get_speech_timestamps

    from voicecheck.audio import resample
    from voicecheck.vad import SileroVad

    audio = load(CLIP)
    x = resample(np.concatenate([silence(1.0), audio.samples, noise(1.0, amplitude=0.01), audio.samples]), 16000, rate)
    x = x.astype(np.float32)
    stream, sequence = SileroVad(runtime="stream"), SileroVad()
    p_stream, p_seq = stream.probabilities(x, rate), sequence.probabilities(x, rate)
    assert p_stream.shape == p_seq.shape == (int(np.ceil(len(x) / (rate // 31.25))),)
    assert np.abs(p_stream - p_seq).max() < 1e-4
    assert p_seq.max() > 0.9 and p_seq[: int(0.8 * 31.25)].max() < 0.5  # speech found, leading silence not
    assert sequence.regions(x, rate) == stream.regions(x, rate)
    with torch.no_grad():
        stamps = get_speech_timestamps(
            torch.from_numpy(x),
            stream._load(),
            sampling_rate=rate,
            threshold=0.5,
            min_silence_duration_ms=300,
            speech_pad_ms=50,
            min_speech_duration_ms=250,
        )
    expected = [(s["start"] / rate, s["end"] / rate) for s in stamps]
    assert [(r.start_s, r.end_s) for r in stream.regions(x, rate)] == expected


def test_sequence_runtime_over_blocks(monkeypatch) -> None:
    """Blocks carry the LSTM state and the previous chunk's tail: tiny blocks give the same probabilities."""
    from voicecheck.vad import SileroVad, _SequenceSilero

    x = resample_clip(8000)
    vad = SileroVad()
    whole = vad.probabilities(x, 8000)
    monkeypatch.setattr(_SequenceSilero, "_BLOCK", 7)
    assert np.abs(vad.probabilities(x, 8000) - whole).max() < 1e-5


def test_unknown_silero_layout_falls_back_to_streaming(monkeypatch) -> None:
    """A silero release whose internals the fast path cannot read still gives silero's regions."""
    from voicecheck.vad import SileroVad, _SequenceSilero

    def moved(self, jit) -> None:
        raise AttributeError("'RecursiveScriptModule' object has no attribute 'stft'")

    x = resample_clip(8000)
    expected = SileroVad(runtime="stream").regions(x, 8000)
    monkeypatch.setattr(_SequenceSilero, "__init__", moved)
    vad = SileroVad()
    with pytest.warns(UserWarning, match="chunk by chunk"):
        got = vad.regions(x, 8000)
    assert got == expected and len(got) > 0


def test_unknown_runtime_is_refused() -> None:
    from voicecheck.vad import SileroVad

    with pytest.raises(ValueError, match="runtime"):
        SileroVad(runtime="onnx").regions(noise(1.0), 16000)


def resample_clip(rate: int) -> np.ndarray:
    from voicecheck.audio import resample

    return resample(load(CLIP).samples, 16000, rate).astype(np.float32)


def test_many_recordings_at_once_are_each_as_found_alone(monkeypatch) -> None:
    """regions_many (silero's LSTM over several recordings together, as a batch task runs it) finds
    what each recording gives alone: different lengths, a silent one, another rate, and blocks so small
    that the longer recordings carry their state across blocks while the shorter ones have ended."""
    from voicecheck.vad import SileroVad, _SequenceSilero, regions_of

    clip = resample_clip(8000)
    items = [
        (clip, 8000),
        (np.concatenate([silence(2.0, 8000), clip, noise(0.7, 8000, 0.01), clip[: len(clip) // 2]]), 8000),
        (silence(3.0, 8000), 8000),
        (load(CLIP).samples, 16000),
        (clip[: len(clip) // 3], 8000),
    ]
    vad = SileroVad()
    alone = [vad.regions(x, rate) for x, rate in items]
    assert sum(len(r) > 0 for r in alone) == 4 and alone[2] == []
    assert vad.regions_many(items) == alone
    monkeypatch.setattr(_SequenceSilero, "_BLOCK", 13)
    assert vad.regions_many(items) == alone
    many = vad.probabilities_many([x for x, rate in items if rate == 8000], 8000)
    for (x, _), p in zip([i for i in items if i[1] == 8000], many, strict=True):
        assert np.abs(p - vad.probabilities(x.astype(np.float32), 8000)).max() < 1e-5
    assert regions_of(EnergyVad(), items) == [EnergyVad().regions(x, rate) for x, rate in items]  # no regions_many


def test_engine_embeds_a_task_with_one_vad_pass(silero, tmp_path) -> None:
    """Engine.embed_many gives each call what embed_audio gives it alone, too little speech included."""
    audio = load(CLIP)
    short = write(tmp_path / "short.wav", audio.samples[: int(1.0 * 16000)], 16000)
    engine = Engine(Settings(), embedder=FakeEmbedder(min_speech_s=3.0), vad=silero)
    calls = [load(CLIP), load(short), load(write(tmp_path / "long.wav", np.tile(audio.samples, 2), 16000))]
    together = engine.embed_many(calls)
    assert isinstance(together[1], InsufficientSpeechError)
    for got, call in zip([together[0], together[2]], [calls[0], calls[2]], strict=True):
        alone = engine.embed_audio(call)
        assert got.regions == alone.regions
        np.testing.assert_allclose(got.vector, alone.vector, atol=1e-6)


@pytest.mark.parametrize(
    ("frames", "kernel", "stride", "padding"),
    [(4, 3, 1, 1), (4, 3, 2, 1), (2, 3, 2, 1), (1, 3, 1, 1), (5, 5, 2, 2), (6, 1, 1, 0), (7, 4, 3, 0)],
)
def test_convolution_as_one_product_per_output_frame(frames: int, kernel: int, stride: int, padding: int) -> None:
    """_frame_products gives torch's conv1d (zero padding included) on inputs laid out frame-major,
    whatever the kernel, stride and padding; taps that only see padding are left out of the weights."""
    import torch

    from voicecheck.vad import _frame_products

    torch.manual_seed(frames * 100 + kernel * 10 + stride)
    conv = torch.nn.Conv1d(5, 3, kernel, stride=stride, padding=padding)
    x = torch.randn(9, 5, frames)
    with torch.no_grad():
        want = conv(x)  # (n, out channels, out frames)
        products = _frame_products(conv, frames)
        flat = x.permute(0, 2, 1).reshape(9, -1)  # (n, frames x channels), frame-major
        got = torch.stack([torch.addmm(bias, flat[:, lo:hi], w) for lo, hi, w, bias in products], dim=2)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for lo, hi, w, _ in products:
        assert 0 <= lo < hi <= frames * 5 and w.shape == (hi - lo, 3)
        assert (hi - lo) // 5 <= kernel


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silero_feature_stack_runs_as_matrix_products(rate: int) -> None:
    """The installed silero's feature stack takes the matrix-product path (not the modules' fallback)
    and gives the modules' features on a block of chunks, quiet and loud."""
    import torch
    from silero_vad import load_silero_vad

    from voicecheck.vad import _Features, _features

    model = load_silero_vad()._model_8k if rate == 8000 else load_silero_vad()._model
    features = _features(model)
    assert isinstance(features, _Features)
    width = 288 if rate == 8000 else 576
    rows = torch.randn(40, width, generator=torch.Generator().manual_seed(2)) * torch.logspace(-4, 0, 40)[:, None]
    with torch.no_grad():
        want = model.encoder(model.stft(rows)).squeeze(-1)
        got = features(rows)
    assert got.shape == want.shape == (40, 128)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_lstm_runs_each_recording_only_to_its_end() -> None:
    """_lstm_to_ends gives each recording what the LSTM gives it alone: its outputs up to its end
    (zeros after) and its state at its own end, with recordings of several lengths side by side."""
    import torch

    from voicecheck.vad import _lstm_to_ends

    torch.manual_seed(3)
    lstm = torch.nn.LSTM(6, 4)
    sizes = [9, 9, 5, 2, 1]
    seq = torch.zeros(9, len(sizes), 6)
    for k, n in enumerate(sizes):
        seq[:n, k] = torch.randn(n, 6)
    h0, c0 = torch.randn(1, len(sizes), 4), torch.randn(1, len(sizes), 4)
    with torch.no_grad():
        hidden, (h, c) = _lstm_to_ends(lstm, seq, sizes, h0, c0)
        for k, n in enumerate(sizes):
            alone, (h_k, c_k) = lstm(seq[:n, k : k + 1], (h0[:, k : k + 1], c0[:, k : k + 1]))
            torch.testing.assert_close(hidden[:n, k], alone[:, 0], rtol=1e-5, atol=1e-6)
            assert torch.all(hidden[n:, k] == 0)
            torch.testing.assert_close(h[:, k], h_k[:, 0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(c[:, k], c_k[:, 0], rtol=1e-5, atol=1e-6)
