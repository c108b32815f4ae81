"""Speech regions with silero-vad (its weights ship in its wheel), and net speech."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .audio import resample
from .types import SpeechRegion


class Vad(Protocol):
    """Finds speech in mono audio."""

    def regions(self, samples: np.ndarray, sample_rate: int) -> list[SpeechRegion]:
        """Speech regions in seconds from the start of ``samples``, sorted, non-overlapping."""
        ...


def regions_of(vad: Vad, items: list[tuple[np.ndarray, int]]) -> list[list[SpeechRegion]]:
    """Speech regions of several recordings: batched when the VAD can (``regions_many``), else one by one."""
    many = getattr(vad, "regions_many", None)
    if many is not None:
        return list(many(items))
    return [vad.regions(samples, rate) for samples, rate in items]


@dataclass
class SileroVad:
    """silero-vad v5/v6 (weights from the silero-vad wheel), run at 8 or 16 kHz.

    silero scores every 32 ms chunk with its state carried through the whole recording, as its
    ``get_speech_timestamps`` does; silero's hysteresis then turns the probabilities into regions.
    The default runtime gets the same probabilities (to ~1e-5) in far less CPU by running the
    model's two halves separately (:class:`_SequenceSilero`); "stream" runs silero's TorchScript
    model chunk by chunk, the reference the tests compare against.

    Attributes:
        threshold: speech probability above which a frame is speech, 0..1.
        min_silence_s: shorter gaps do not end a region.
        pad_s: padding added on both sides of each region.
        min_speech_s: shorter regions are dropped.
        runtime: "sequence" (default) or "stream".
    """

    threshold: float = 0.5
    min_silence_s: float = 0.3
    pad_s: float = 0.05
    min_speech_s: float = 0.25
    runtime: str = "sequence"
    _model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            import torch
            from silero_vad import load_silero_vad

            if self.runtime not in ("sequence", "stream"):
                raise ValueError(f"unknown silero runtime {self.runtime!r}; use 'sequence' or 'stream'")
            threads = torch.get_num_threads()
            jit = load_silero_vad()
            torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread
            self._model = jit
            if self.runtime == "sequence":
                try:
                    self._model = _SequenceSilero(jit)
                except AttributeError as e:  # a silero release with another internal layout
                    warnings.warn(
                        f"silero-vad's model layout is not the one voicecheck's fast path reads ({e}); "
                        "running it chunk by chunk instead (same regions, about 3x the VAD time)",
                        stacklevel=2,
                    )
        return self._model

    def regions(self, samples: np.ndarray, sample_rate: int) -> list[SpeechRegion]:
        return self.regions_many([(samples, sample_rate)])[0]

    def regions_many(self, items: list[tuple[np.ndarray, int]]) -> list[list[SpeechRegion]]:
        """Speech regions of several recordings, each exactly as :meth:`regions` finds them alone.

        The sequence runtime runs silero's LSTM over all of them together (one batched step for
        every 32 ms, each recording with its own state): at a batch task's 8 calls the LSTM costs
        a fraction of running it per recording, and the feature stack sees all chunks in one call.

        Args:
            items: (mono samples, sample rate) pairs.
        """
        prepared: list[tuple[np.ndarray, int] | None] = []
        for samples, sample_rate in items:
            rate = sample_rate if sample_rate in (8000, 16000) else 16000
            x = np.ascontiguousarray(resample(samples, sample_rate, rate), dtype=np.float32)
            peak = float(np.max(np.abs(x))) if len(x) else 0.0
            prepared.append((x, rate) if peak >= 1e-4 else None)  # digital silence: skips the model
        probs: dict[int, np.ndarray] = {}
        for rate in (8000, 16000):
            todo = [i for i, p in enumerate(prepared) if p is not None and p[1] == rate]
            if todo:
                found = self.probabilities_many([prepared[i][0] for i in todo], rate)  # type: ignore[index]
                probs.update(zip(todo, found, strict=True))
        out: list[list[SpeechRegion]] = []
        for i, p in enumerate(prepared):
            if p is None:
                out.append([])
                continue
            x, rate = p
            out.append([SpeechRegion(s["start"] / rate, s["end"] / rate) for s in self._stamps(probs[i], len(x), rate)])
        return out

    def probabilities(self, x: np.ndarray, sample_rate: int) -> np.ndarray:
        """silero's speech probability per chunk (256 samples at 8 kHz, 512 at 16 kHz; 32 ms).

        Args:
            x: mono float32 audio at 8000 or 16000 Hz, shape (n,).
            sample_rate: 8000 or 16000.

        Returns:
            float32, shape (ceil(n / chunk),), each in [0, 1].
        """
        return self.probabilities_many([x], sample_rate)[0]

    def probabilities_many(self, xs: list[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """:meth:`probabilities` of several recordings at one rate (batched by the sequence runtime)."""
        frames = [_frames(x, sample_rate) for x in xs]
        model = self._load()
        if isinstance(model, _SequenceSilero):
            return model.probabilities_many(frames, sample_rate)
        import torch

        out = []
        with torch.no_grad():
            for f in frames:
                tensor = torch.from_numpy(f)
                model.reset_states()
                out.append(np.array([model(tensor[i], sample_rate).item() for i in range(len(f))], dtype=np.float32))
        return out

    def _stamps(self, probs: np.ndarray, n_samples: int, sample_rate: int) -> list[dict[str, int]]:
        """silero's hysteresis over per-chunk probabilities -> [{"start", "end"}] in samples."""
        options = dict(
            sampling_rate=sample_rate,
            threshold=self.threshold,
            min_silence_duration_ms=int(self.min_silence_s * 1000),
            speech_pad_ms=int(self.pad_s * 1000),
            min_speech_duration_ms=int(self.min_speech_s * 1000),
        )
        try:
            from silero_vad.utils_vad import get_speech_timestamps_from_probs
        except ImportError:  # silero-vad < 6: replay the probabilities through get_speech_timestamps
            import torch
            from silero_vad import get_speech_timestamps

            return get_speech_timestamps(torch.zeros(n_samples), _Replay(probs), **options)
        return get_speech_timestamps_from_probs(probs.tolist(), audio_length_samples=n_samples, **options)


class _SequenceSilero:
    """silero's TorchScript model run over whole recordings at once instead of chunk by chunk.

    silero (v5/v6) is a feature stack (STFT + convolutions) that sees only one chunk and the tail
    of the previous one, then an LSTM cell that carries the state, then a small head. So the feature
    stack runs on a block of chunks in one batched call, and the LSTM cell's weights run as
    ``torch.nn.LSTM`` over the block (several recordings side by side), the state carried into the
    next block; the head is per chunk. The feature stack runs as matrix products (:class:`_Features`:
    the STFT magnitude from a real FFT instead of silero's convolution with a Fourier basis, which
    also computes a phase it throws away; each convolution as one product per output frame), checked
    equal to the modules at load. Same weights, so the same probabilities to float rounding (~4e-6;
    checked against the streaming model in the tests; regions identical on 208 of 208 recordings of
    the throughput benchmark and samples/ by ``benchmarks/vad_regions.py``), at a fraction of the CPU:
    ~0.31 ms per audio second (8 calls together, 1 thread, AVX-512 without AMX; 0.39 with each
    convolution's input unfolded, ~0.5 with the modules).
    """

    _BLOCK = 1024  # chunks per block (~33 s at 8 kHz): bounds memory; the feature stack is fastest near this size

    def __init__(self, jit: Any) -> None:
        import torch

        self._torch = torch
        self._parts = {}
        for rate, model in ((8000, jit._model_8k), (16000, jit._model)):
            cell = model.decoder.rnn
            lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1])
            with torch.no_grad():
                for mine, theirs in (
                    ("weight_ih_l0", "weight_ih"),
                    ("weight_hh_l0", "weight_hh"),
                    ("bias_ih_l0", "bias_ih"),
                    ("bias_hh_l0", "bias_hh"),
                ):
                    getattr(lstm, mine).copy_(getattr(cell, theirs))
            self._parts[rate] = (_features(model), lstm.eval(), _head(model.decoder.decoder))

    def probabilities_many(self, frames: list[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Per-chunk probabilities of recordings given as ``frames`` (n_i, chunk), each state from zero.

        Runs in blocks of ``_BLOCK`` chunks: the feature stack over each recording's chunks of the
        block in one call, then the LSTM over the recordings still running, side by side, each
        one's state carried into its next block. Memory stays bounded however long a recording.
        """
        torch = self._torch
        features_of, lstm, head = self._parts[sample_rate]
        context = 64 if sample_rate == 16000 else 32  # silero prepends the previous chunk's tail
        outs = [np.empty(len(f), dtype=np.float32) for f in frames]
        states: dict[int, tuple] = {}
        longest = max((len(f) for f in frames), default=0)
        with torch.no_grad():
            for i in range(0, longest, self._BLOCK):
                # longest first: the LSTM drops each recording at its end (see _lstm_to_ends)
                alive = sorted((j for j, f in enumerate(frames) if len(f) > i), key=lambda j: -len(frames[j]))
                sizes = [min(len(frames[j]) - i, self._BLOCK) for j in alive]
                # the feature stack per recording (one call over all of them is slower: cache misses),
                # the LSTM over all of them side by side
                seq = None
                for k, j in enumerate(alive):
                    block = frames[j][i : i + sizes[k]]
                    rows = np.zeros((len(block), context + block.shape[1]), dtype=np.float32)
                    rows[:, context:] = block
                    rows[1:, :context] = block[:-1, -context:]
                    if i:
                        rows[0, :context] = frames[j][i - 1, -context:]
                    features = features_of(torch.from_numpy(rows))
                    if seq is None:
                        seq = features.new_zeros(max(sizes), len(alive), features.shape[1])
                    seq[: sizes[k], k] = features
                assert seq is not None
                zero = seq.new_zeros(1, lstm.hidden_size)
                h0 = torch.stack([states.get(j, (zero, zero))[0] for j in alive], dim=1)
                c0 = torch.stack([states.get(j, (zero, zero))[1] for j in alive], dim=1)
                hidden, (h, c) = _lstm_to_ends(lstm, seq, sizes, h0, c0)
                valid = torch.cat([hidden[:n, k] for k, n in enumerate(sizes)])
                p = head(valid).numpy()
                for k, (j, piece) in enumerate(zip(alive, np.split(p, np.cumsum(sizes)[:-1]), strict=True)):
                    outs[j][i : i + sizes[k]] = piece
                    states[j] = (h[:, k], c[:, k])
        return outs


def _lstm_to_ends(lstm: Any, seq: Any, sizes: list[int], h0: Any, c0: Any) -> tuple[Any, tuple[Any, Any]]:
    """``lstm`` over recordings side by side, each only up to its own end: no steps on padding.

    A batch task's calls differ in length (20-60 s in the throughput benchmark: a fifth of the
    steps of the longest-padded block were padding), and the LSTM's cost is proportional to the
    recordings it runs. So it runs in segments between the recordings' ends, each over the
    recordings still going, their state carried from the segment before.

    Args:
        seq: (max(sizes), recordings, features), recordings sorted longest first (zeros past an end).
        sizes: steps of each recording, non-increasing.
        h0, c0: initial states, (1, recordings, hidden).

    Returns:
        (hidden (max(sizes), recordings, hidden), zeros past each end; (h, c) each at its own end).
    """
    import torch

    hidden = seq.new_zeros(seq.shape[0], seq.shape[1], lstm.hidden_size)
    h, c = h0, c0
    start = 0
    for end in sorted(set(sizes)):
        m = sum(1 for n in sizes if n >= end)  # the first m recordings run through this segment
        out, (hm, cm) = lstm(seq[start:end, :m], (h[:, :m].contiguous(), c[:, :m].contiguous()))
        hidden[start:end, :m] = out
        h, c = torch.cat([hm, h[:, m:]], dim=1), torch.cat([cm, c[:, m:]], dim=1)
        start = end
    return hidden, (h, c)


def _features(model: Any) -> Any:
    """silero's feature stack, rows of (context + chunk) samples -> (n, 128) features: as a few
    matrix products (:class:`_Features`) when they give the module's values on a probe block,
    else the modules themselves (STFT magnitude without the phase, then the encoder)."""
    import torch

    stft, encoder = _magnitude(model.stft), model.encoder

    def modules(rows: Any) -> Any:
        return encoder(stft(rows)).squeeze(-1)

    try:
        fast = _Features(model)
    except (AttributeError, IndexError, RuntimeError, ValueError):  # another silero layout: the modules
        return modules
    width = int(model.stft.filter_length) * 9 // 4  # a chunk plus its context: 288 samples at 8 kHz
    probe = torch.randn(64, width, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        want, got = modules(probe), fast(probe)
    same = got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    return fast if same else modules


class _Features:
    """silero's feature stack (STFT magnitude, then four conv + ReLU blocks) of a block of chunks as
    matrix products: the magnitude from a real FFT of the Hann-windowed frames (silero's STFT is a
    convolution with that windowed Fourier basis, ~30x the arithmetic), then each convolution as one
    product per output frame: a chunk has only 4 spectrogram frames (then 4, 2, 1, 1 after each
    block), so an output frame's input is a contiguous span of the previous block's frames, i.e. of
    columns of its (n, frames x channels) output, and its weights are the taps that see those frames
    stacked; taps that only see zero padding are left out, and nothing is copied to unfold the input.
    Same values as the modules to float rounding; :func:`_features` checks that on a probe block
    before using it.
    """

    def __init__(self, model: Any) -> None:
        import torch

        stft = model.stft
        basis = stft.forward_basis_buffer[:, 0, :]
        self.n_fft, self.hop = int(stft.filter_length), int(stft.hop_length)
        self.pad = tuple(int(v) for v in stft.padding.padding)
        self.window = basis[0].detach().clone()  # the k = 0 row of the windowed basis: the window itself
        frames = (self.n_fft * 9 // 4 + sum(self.pad) - self.n_fft) // self.hop + 1
        self.layers: list[list[tuple[int, int, Any, Any]]] = []
        for i in range(4):
            conv = getattr(model.encoder, str(i)).reparam_conv
            self.layers.append(_frame_products(conv, frames))
            frames = len(self.layers[-1])
        if frames != 1:
            raise ValueError(f"silero's encoder ends on {frames} frames per chunk, not 1")
        self._torch = torch

    def __call__(self, rows: Any) -> Any:
        return self.encode(self.magnitude(rows))

    def magnitude(self, rows: Any) -> Any:
        """(n, context + chunk) samples -> (n, frames x bins) STFT magnitudes, frame-major."""
        torch = self._torch
        x = torch.nn.functional.pad(rows[:, None, :], self.pad, mode="reflect")[:, 0]
        spectrum = torch.view_as_real(torch.fft.rfft(x.unfold(1, self.n_fft, self.hop) * self.window, dim=-1))
        re, im = spectrum[..., 0], spectrum[..., 1]
        return (re * re + im * im).sqrt_().reshape(rows.shape[0], -1)

    def encode(self, h: Any) -> Any:
        """:meth:`magnitude`'s output -> (n, 128) features: the four conv + ReLU blocks as products."""
        torch = self._torch
        for products in self.layers:
            outs = [torch.addmm(bias, h[:, lo:hi], weight) for lo, hi, weight, bias in products]
            h = torch.relu_(outs[0] if len(outs) == 1 else torch.cat(outs, dim=1))
        return h


def _frame_products(conv: Any, frames: int) -> list[tuple[int, int, Any, Any]]:
    """A 1-D convolution over ``frames`` input frames (zero padded, as torch pads) as one matrix
    product per output frame: [(first column, end column, weights (columns, out channels), bias)],
    where the columns are those of the input laid out (n, frames x in channels), frame-major."""
    weight, bias = conv.weight.detach(), conv.bias.detach().clone()
    k, stride, pad = int(weight.shape[2]), int(conv.stride[0]), int(conv.padding[0])
    channels = int(weight.shape[1])
    products = []
    for t in range((frames + 2 * pad - k) // stride + 1):
        first = t * stride - pad  # the input frame tap 0 sees
        taps = [j for j in range(k) if 0 <= first + j < frames]  # the others only see zero padding
        stacked = weight[:, :, taps].permute(2, 1, 0).reshape(len(taps) * channels, -1).contiguous()
        lo = (first + taps[0]) * channels
        products.append((lo, lo + len(taps) * channels, stacked, bias))
    return products


def _head(decoder: Any) -> Any:
    """silero's output head (ReLU, a 1x1 convolution to one channel, sigmoid) on LSTM outputs (n, hidden)
    -> (n,) probabilities; the module's own layers when they are not laid out so."""
    import torch

    try:
        conv = getattr(decoder, "2")
        weight, bias = conv.weight.detach()[0, :, 0].clone(), conv.bias.detach().clone()
    except (AttributeError, IndexError, RuntimeError):
        return lambda hidden: decoder(hidden[:, :, None]).squeeze(1).mean(dim=1)  # silero averages the last axis

    def head(hidden: Any) -> Any:
        return torch.sigmoid(torch.relu(hidden) @ weight + bias)

    probe = torch.randn(16, weight.shape[0], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = decoder(probe[:, :, None]).squeeze(1).mean(dim=1)
        if not torch.allclose(head(probe), want, rtol=1e-5, atol=1e-6):
            return lambda hidden: decoder(hidden[:, :, None]).squeeze(1).mean(dim=1)
    return head


def _magnitude(stft: Any) -> Any:
    """silero's STFT magnitude without the phase its module also computes (and silero discards):
    reflection padding, a strided convolution with its Fourier basis, |.| of the first half of the
    bins. Checked equal to the module on a random block; a release where it is not keeps the module.
    """
    import torch

    basis, hop, bins = stft.forward_basis_buffer, int(stft.hop_length), int(stft.filter_length) // 2 + 1
    pad = stft.padding

    def magnitude(x: Any) -> Any:
        y = torch.conv1d(pad(x).unsqueeze(1), basis, None, [hop], [0])
        return torch.sqrt(y[:, :bins] ** 2 + y[:, bins:] ** 2)

    probe = torch.randn(8, 4 * hop + 32, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        same = torch.allclose(magnitude(probe), stft(probe), rtol=1e-5, atol=1e-6)
    return magnitude if same else stft


def _frames(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """``x`` cut into silero's chunks, the last zero-padded: float32, shape (ceil(n / chunk), chunk)."""
    chunk = _chunk(sample_rate)
    frames = np.zeros((-(-len(x) // chunk), chunk), dtype=np.float32)
    frames.reshape(-1)[: len(x)] = x
    return frames


def _chunk(sample_rate: int) -> int:
    """silero's chunk length in samples at ``sample_rate`` (32 ms)."""
    return 512 if sample_rate == 16000 else 256


class _Replay:
    """Stands in for the silero model in ``get_speech_timestamps``: returns given probabilities in turn."""

    def __init__(self, probs: np.ndarray) -> None:
        self._probs = probs.tolist()
        self._i = 0

    def reset_states(self) -> None:
        self._i = 0

    def __call__(self, chunk: Any, sample_rate: int) -> Any:
        import torch

        p = self._probs[self._i] if self._i < len(self._probs) else 0.0
        self._i += 1
        return torch.tensor(p)


def speech_seconds(regions: list[SpeechRegion]) -> float:
    """Net speech: the summed length of the regions."""
    return float(sum(r.duration_s for r in regions))


def collect(samples: np.ndarray, sample_rate: int, regions: list[SpeechRegion]) -> np.ndarray:
    """Concatenate the speech regions of ``samples`` into one float32 array."""
    parts = [samples[int(r.start_s * sample_rate) : int(r.end_s * sample_rate)] for r in regions]
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


def recording_time(offset_s: float | np.ndarray, regions: list[SpeechRegion]) -> np.ndarray:
    """Map offsets in the concatenated speech back to times in the recording.

    Args:
        offset_s: seconds into the output of :func:`collect`.
        regions: the regions that built it.

    Returns:
        Seconds from the start of the recording, same shape as ``offset_s``.
    """
    offsets = np.atleast_1d(np.asarray(offset_s, dtype=np.float64))
    if not regions:
        return offsets
    starts = np.array([r.start_s for r in regions])
    lengths = np.array([r.duration_s for r in regions])
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    idx = np.clip(np.searchsorted(cum, offsets, side="right") - 1, 0, len(regions) - 1)
    return starts[idx] + (offsets - cum[idx])
