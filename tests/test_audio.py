"""voicecheck.audio: formats, rates, channels, and every way a file can be unreadable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fakes import SAMPLES, SPEECH, noise, peak_hz, stereo, tone, write
from voicecheck.audio import at_rate, load, resample
from voicecheck.errors import AudioError, UsageError
from voicecheck.types import Audio

FORMATS = [
    ("WAV", "PCM_16", "wav"),
    ("WAV", "PCM_24", "wav"),
    ("WAV", "PCM_32", "wav"),
    ("WAV", "FLOAT", "wav"),
    ("WAV", "ULAW", "wav"),
    ("WAV", "ALAW", "wav"),
    ("FLAC", "PCM_16", "flac"),
    ("OGG", "VORBIS", "ogg"),
    ("MP3", "MPEG_LAYER_III", "mp3"),
]


def _write_or_skip(path: Path, x: np.ndarray, rate: int, fmt: str, subtype: str) -> Path:
    try:
        return write(path, x, rate, subtype=subtype, fmt=fmt)
    except (sf.LibsndfileError, ValueError, TypeError) as e:
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}/{subtype}: {e}")


@pytest.mark.parametrize(("fmt", "subtype", "ext"), FORMATS, ids=[f"{f}-{s}" for f, s, _ in FORMATS])
def test_formats_decode_to_the_same_tone(tmp_path: Path, fmt: str, subtype: str, ext: str) -> None:
    rate = 16000
    path = _write_or_skip(tmp_path / f"tone.{ext}", tone(440, 2.0, rate), rate, fmt, subtype)
    audio = load(path)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.sample_rate == audio.file_sample_rate == rate
    assert audio.duration_s == pytest.approx(2.0, abs=0.1)  # MP3 adds encoder padding
    assert np.max(np.abs(audio.samples)) <= 1.0
    assert peak_hz(audio.samples, rate) == pytest.approx(440, abs=5)
    assert audio.subtype == subtype
    assert audio.channels == 1 and audio.channel == 0
    assert audio.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert audio.path == str(path)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_any_sample_rate_is_kept(tmp_path: Path, rate: int) -> None:
    audio = load(write(tmp_path / "t.wav", tone(1000, 1.0, rate), rate))
    assert audio.sample_rate == rate
    assert len(audio.samples) == rate
    assert peak_hz(audio.samples, rate) == pytest.approx(1000, abs=3)


@pytest.mark.parametrize(
    ("rate", "subtype", "band"),
    [
        (8000, "PCM_16", "narrow"),
        (16000, "ULAW", "narrow"),
        (16000, "ALAW", "narrow"),
        (16000, "PCM_16", "wide"),
        (44100, "FLOAT", "wide"),
    ],
)
def test_band_follows_rate_and_codec(tmp_path: Path, rate: int, subtype: str, band: str) -> None:
    assert load(write(tmp_path / "t.wav", tone(300, 0.5, rate), rate, subtype)).band == band


def test_stereo_takes_channel_1_by_default_and_any_channel_on_request(tmp_path: Path) -> None:
    rate = 8000
    path = write(tmp_path / "call.wav", stereo(tone(300, 1.0, rate), tone(1200, 1.0, rate)), rate, "ULAW")
    default = load(path)
    assert default.channel == 1 and default.channels == 2
    assert peak_hz(default.samples, rate) == pytest.approx(1200, abs=10)
    agent = load(path, channel=0)
    assert agent.channel == 0 and peak_hz(agent.samples, rate) == pytest.approx(300, abs=10)
    assert load(path, channel=None).channel == 0
    assert default.content_hash == agent.content_hash  # the file's hash, not the channel's


def test_missing_channel_is_a_usage_error_naming_file_and_channels(tmp_path: Path) -> None:
    path = write(tmp_path / "call.wav", stereo(tone(300, 0.5), tone(900, 0.5)), 16000)
    with pytest.raises(UsageError, match=r"call\.wav.*2 channels.*channel 2"):
        load(path, channel=2)


def test_mono_ignores_the_channel(tmp_path: Path) -> None:
    path = write(tmp_path / "mono.wav", tone(300, 0.5), 16000)
    assert load(path, channel=1).channel == 0
    assert load(path, channel=5).channel == 0


def test_sample_calls_are_stereo_mulaw_8k() -> None:
    audio = load(SAMPLES / "calls" / "C001.wav")
    assert (audio.sample_rate, audio.channels, audio.subtype, audio.band) == (8000, 2, "ULAW", "narrow")


def _wav_bytes(tmp_path: Path) -> bytes:
    return write(tmp_path / "full.wav", tone(440, 2.0), 16000).read_bytes()


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("missing.wav", None, "no such file"),
        ("empty.wav", lambda tmp: b"", "empty file"),
        ("header-only.wav", lambda tmp: _wav_bytes(tmp)[:44], "truncated"),
        ("cut.wav", lambda tmp: _wav_bytes(tmp)[: len(_wav_bytes(tmp)) // 2], "truncated"),
        ("cut.flac", lambda tmp: write(tmp / "f.flac", noise(3.0), 16000).read_bytes()[:4000], "not a readable"),
        ("notes.wav", lambda tmp: b"call notes: customer asked to call back\n" * 20, "not a readable"),
        ("notes.txt", lambda tmp: b"hello\n" * 100, "not a readable"),
        ("random.ogg", lambda tmp: np.random.default_rng(0).bytes(5000), "not a readable"),
    ],
)
def test_unreadable_files_raise_audio_error_naming_the_file(tmp_path: Path, name: str, make, message: str) -> None:
    path = tmp_path / name
    if make is not None:
        path.write_bytes(make(tmp_path))
    with pytest.raises(AudioError, match=message) as info:
        load(path)
    assert name in str(info.value)
    assert "\n" not in str(info.value)


def test_a_directory_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="directory"):
        load(tmp_path)


def test_non_finite_samples_are_refused(tmp_path: Path) -> None:
    x = tone(440, 0.5)
    x[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        load(write(tmp_path / "nan.wav", x, 16000, "FLOAT"))


def test_streaming_wav_with_unset_sizes_still_loads(tmp_path: Path) -> None:
    """Recorders that never finalise the header leave the data size 0xFFFFFFFF; that is not truncation."""
    data = bytearray(_wav_bytes(tmp_path))
    at = data.find(b"data")
    data[at + 4 : at + 8] = b"\xff\xff\xff\xff"
    data[4:8] = b"\xff\xff\xff\xff"
    path = tmp_path / "streamed.wav"
    path.write_bytes(bytes(data))
    assert load(path).duration_s == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize(("source", "target"), [(8000, 16000), (44100, 16000), (16000, 8000)])
def test_resample_keeps_length_ratio_and_pitch(source: int, target: int) -> None:
    y = resample(tone(440, 1.0, source), source, target)
    assert y.dtype == np.float32
    assert len(y) == pytest.approx(target, abs=2)
    assert peak_hz(y, target) == pytest.approx(440, abs=3)


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(UsageError):
        resample(tone(440, 0.1), 0, 16000)


def test_at_rate_keeps_provenance(tmp_path: Path) -> None:
    audio = load(write(tmp_path / "t.wav", tone(440, 1.0, 8000), 8000))
    up = at_rate(audio, 16000)
    assert isinstance(up, Audio)
    assert up.sample_rate == 16000 and up.file_sample_rate == 8000
    assert up.band == "narrow" and up.content_hash == audio.content_hash
    assert up.duration_s == pytest.approx(audio.duration_s, abs=1e-3)
    assert at_rate(audio, 8000) is audio


@pytest.mark.parametrize("rates", [(8000, 16000), (16000, 8000), (16000, 44100), (16000, 16000)])
def test_resampling_spans_is_resampling_the_whole_recording(rates) -> None:
    """Only the speech is resampled (plus a margin): the same samples as resampling it all and cutting."""
    from voicecheck.audio import resample, resample_spans

    rate, target = rates
    x = resample(load(SPEECH / "vctk_autovc" / "p225" / "p225_003.flac").samples, 16000, rate)
    end = len(x) / rate
    spans = [(0.0, 0.4), (0.35, 1.21), (1.5, 1.5), (end - 0.7, end)]  # the start, overlapping, empty, the end
    whole = resample(x, rate, target)
    got = resample_spans(x, rate, target, spans)
    for (a, b), part in zip(spans, got, strict=True):
        want = whole[int(a * target) : int(b * target)]
        assert part.shape == want.shape and part.dtype == np.float32
        assert np.abs(part - want).max(initial=0.0) < 1e-5
