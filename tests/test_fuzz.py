"""Property tests over every edge a user's input crosses: audio decoding, manifests, watchlist files,
settings and model manifests. Each input gives a clear VoicecheckError or a valid result — never
another exception (a traceback), and never a ``match`` from a malformed input."""

from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicecheck.audio import load
from voicecheck.config import SCORE_RANGES, Settings, load_settings
from voicecheck.embedders import model_spec
from voicecheck.enrollment import VoiceprintStore, import_watchlist
from voicecheck.errors import VoicecheckError
from voicecheck.manifest import call_rows

pytestmark = pytest.mark.usefixtures("no_lazy_modules")

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _wav_bytes() -> bytes:
    buf = io.BytesIO()
    x = (0.3 * np.sin(np.arange(1600) / 5.0)).astype(np.float32)
    sf.write(buf, np.stack([x, x[::-1]], axis=1), 8000, subtype="ULAW", format="WAV")
    return buf.getvalue()


WAV = _wav_bytes()


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` with a few bytes overwritten, a slice cut out, or truncated."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        a = draw(st.integers(0, len(data)))
        b = draw(st.integers(a, min(len(data), a + 64)))
        del data[a:b]
    return bytes(data[: draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)


def _write(data: bytes, suffix: str = ".wav") -> Path:
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as f:
        f.write(data)
    return Path(f.name)


@FUZZ
@given(st.one_of(st.binary(max_size=2048), mutated(WAV)))
def test_audio_decoding_gives_audio_or_a_clear_error(data: bytes) -> None:
    path = _write(data)
    try:
        audio = load(path, 1)
    except VoicecheckError:
        return
    finally:
        path.unlink()
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1 and len(audio.samples) > 0
    assert np.all(np.isfinite(audio.samples)) and audio.sample_rate > 0


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=1024),
        st.text(max_size=400).map(lambda t: ("call_id,borrower_id,audio\n" + t).encode("utf-8", "surrogatepass")),
        st.lists(st.lists(st.text(max_size=12), min_size=0, max_size=5), max_size=8).map(
            lambda rows: ("call_id,borrower_id,audio,customer_channel\n" + "\n".join(",".join(r) for r in rows)).encode(
                "utf-8", "surrogatepass"
            )
        ),
    )
)
def test_manifests_give_rows_or_a_clear_error(data: bytes) -> None:
    path = _write(data, ".csv")
    try:
        rows = list(call_rows(path, 1))
    except VoicecheckError:
        return
    finally:
        path.unlink()
    for r in rows:
        if r.problem is None:
            assert r.call_id == r.call_id.strip() and r.call_id and r.borrower_id and r.audio
            assert r.channel is not None and 0 <= r.channel <= 63


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=40,
)
VECTOR = st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=0, max_size=40)


@st.composite
def watchlists(draw: st.DrawFn) -> object:
    """Exports that are mostly well formed, with fields swapped for arbitrary JSON."""
    entry = {"label": draw(st.text(max_size=10) | JSON), "vector": draw(VECTOR | JSON)}
    if draw(st.booleans()):
        entry["source"] = draw(JSON)
    data: dict = {"format": "voicecheck-watchlist", "version": 1, "model": "fake-bands", "entries": [entry]}
    if draw(st.booleans()):
        data[draw(st.sampled_from(["format", "model", "entries", "dimension"]))] = draw(JSON)
    return draw(st.sampled_from([data, data["entries"], entry])) if draw(st.integers(0, 9)) == 0 else data


@FUZZ
@given(watchlists())
def test_watchlist_files_store_only_valid_vectors(tmp_path: Path, data: object) -> None:
    path = _write(json.dumps(data).encode(), ".json")
    store = VoiceprintStore(tmp_path / "store")
    try:
        import_watchlist(store, path, "fake-bands", 32, replace=True)
    except VoicecheckError:
        pass
    finally:
        path.unlink()
    for entry in store.watch_list("fake-bands"):
        assert entry.vector.shape == (32,) and np.all(np.isfinite(entry.vector))
        assert abs(float(np.linalg.norm(entry.vector)) - 1.0) < 1e-3
    store.close()


SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
KEYS = st.sampled_from([*Settings.__dataclass_fields__, "threshold", "nonsense"])


@FUZZ
@given(st.dictionaries(KEYS, SCALARS | st.dictionaries(st.sampled_from([*SCORE_RANGES, "x"]), SCALARS), max_size=5))
def test_settings_are_valid_or_refused(values: dict) -> None:
    try:
        s = load_settings(None, **values)
    except VoicecheckError:
        return
    for table in (s.thresholds, s.watchlist_thresholds):
        for mode, value in table.items():
            lo, hi = SCORE_RANGES[mode]
            assert isinstance(value, float) and math.isfinite(value) and lo <= value <= hi
    assert 0 < s.vad_threshold < 1 and s.workers >= 1 and s.cohort_min >= 2 and s.max_audio_s > 0


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["backend", "name", "sample_rate", "hop_s", "window_s", "sha256", "x"]), SCALARS, max_size=5
    )
)
def test_model_manifests_are_valid_or_refused(tmp_path: Path, table: dict) -> None:
    def toml(v: object) -> str:
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return "0" if v is None else repr(v)

    (tmp_path / "models.toml").write_text("[ge2e]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in table.items()))
    try:
        spec = model_spec("ge2e", tmp_path)
    except VoicecheckError:
        return
    assert spec.backend in ("ge2e", "ecapa", "fake") and spec.sample_rate >= 8000
    assert 0 < spec.hop_s <= spec.window_s and math.isfinite(spec.window_s)


@pytest.fixture()
def enrolled_b1(vc, tmp_path: Path):
    from tests.fakes import chord, silence, write

    x = np.concatenate([silence(0.5), chord((220.0, 660.0, 1500.0), 8.0), silence(0.5)])
    assert vc("enroll", "B1", write(tmp_path / "b1.wav", x, 16000), "--channel", "0").exit_code == 0
    return vc


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=4096).filter(lambda b: not b.startswith((b"RIFF", b"fLaC", b"OggS", b"ID3"))))
def test_garbage_audio_is_never_a_match(enrolled_b1, data: bytes) -> None:
    path = _write(data)
    try:
        res = enrolled_b1("check", path, "--borrower", "B1", "--threshold", "cosine=0.0")
    finally:
        path.unlink()
    assert res.exit_code in (2, 3), res.output
    assert "Traceback" not in res.output
