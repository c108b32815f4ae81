"""The Ray engine: same results as the local engine, bound to 127.0.0.1, optional dependency.

The cluster tests start real local Ray instances (marked ``ray``, ~30 s); they use the fake embedder
and the sample calls, so no model is needed.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakes import REPO, SAMPLES, env_without_workspace, workspace
from voicecheck.batch import run_batch
from voicecheck.config import Settings, load_settings
from voicecheck.errors import BackendUnavailableError
from voicecheck.manifest import Row
from voicecheck.pipeline import enroll_recordings
from voicecheck.report import RESULTS, read_jsonl

LOOPBACK = "127.0.0.1"


def _settings(root: Path, workers: int) -> Settings:
    return load_settings(
        None,
        store=str(root / "store"),
        embeddings=str(workspace(root)),
        model="fake",
        thresholds={"cosine": 0.95},
        workers=workers,
    )


def _manifest(root: Path) -> Path:
    """The eight sample calls plus a missing file (an error record must travel through Ray too)."""
    lines = ["call_id,borrower_id,audio,customer_channel"]
    lines += [f"C00{i},B100{(i - 1) % 4 + 1},{SAMPLES / 'calls' / f'C00{i}.wav'},1" for i in range(1, 9)]
    lines.append(f"C099,B1001,{root / 'missing.wav'},1")
    path = root / "calls.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _by_call(out: Path) -> dict[str, tuple]:
    return {
        r["call_id"]: (r["verdict"], r["score"], r["reason"], r["speech_seconds"]) for r in read_jsonl(out / RESULTS)
    }


def test_missing_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from voicecheck.distributed import map_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'voicecheck\[ray\]'"):
        next(iter(map_ray(Settings(workers=1), [Row(1, "C1", "B1", "x.wav", 1)])))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A separate local Ray cluster on 127.0.0.1 (2 CPUs), stopped when the module's tests end.

    Yields its GCS address. The cluster and this process share a fresh auth token, set before ray
    is imported here (Ray reads it once).
    """
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in auth.items():
            mp.setenv(key, value)
        pytest.importorskip("ray")
        env = {
            **env_without_workspace(),
            **auth,
            "PYTHONPATH": str(REPO),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }  # else Ray on Linux swaps 127.0.0.1 for the LAN address
        script = (
            "import sys, ray\n"
            f"ray.init(num_cpus=2, include_dashboard=False, _node_ip_address={LOOPBACK!r}, log_to_driver=False)\n"
            "print(ray.get_runtime_context().gcs_address, flush=True)\n"
            "sys.stdin.read()\n"
            "ray.shutdown()\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(tmp_path_factory.mktemp("ray")),
        )
        try:
            address = (proc.stdout.readline() if proc.stdout else "").strip()
            if not address:
                pytest.fail("the local Ray cluster did not start")
            yield address
        finally:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.ray
def test_ray_engine_on_a_cluster_gives_the_local_results(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    address = cluster
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    settings = _settings(tmp_path, workers=2)
    pairs = [("B1001", "C008.wav"), ("B1002", "C002.wav"), ("B1003", "C003.wav"), ("B1004", "C004.wav")]
    assert enroll_recordings([(b, str(SAMPLES / "calls" / c)) for b, c in pairs], settings, consent="test consent") == 0
    manifest = _manifest(tmp_path)

    local = run_batch(manifest, tmp_path / "local", replace(settings, workers=1))
    # a fresh embeddings store, so Ray really embeds every call instead of finding them cached
    ray_settings = replace(settings, embeddings=str(workspace(tmp_path / "ray_ws")))
    remote = run_batch(manifest, tmp_path / "ray", ray_settings, engine="ray", address=address)

    assert remote["engine"] == "ray" and remote["calls"] == local["calls"] == 9
    got, want = _by_call(tmp_path / "ray"), _by_call(tmp_path / "local")
    assert got.keys() == want.keys()
    for call_id, (verdict, score, reason, speech_s) in want.items():
        assert got[call_id][0] == verdict, call_id
        assert got[call_id][2] == reason, call_id
        assert got[call_id][3] == pytest.approx(speech_s, abs=0.01)
        if score is not None:
            assert got[call_id][1] == pytest.approx(score, abs=1e-3), call_id
    assert want["C099"][0] == "error" and want["C007"][0] == "inconclusive"
    assert {v for v, *_ in want.values()} >= {"match", "error", "inconclusive"}
    for line in (tmp_path / "ray" / RESULTS).read_text().splitlines():
        json.loads(line)

    assert not ray.is_initialized()  # map_ray disconnected after the batch
    ray.init(address=address, log_to_driver=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        assert nodes and all(n["NodeManagerAddress"] == LOOPBACK for n in nodes)
    finally:
        ray.shutdown()


@pytest.mark.ray
def test_local_ray_started_by_map_ray_stays_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    from voicecheck.distributed import map_ray

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.chdir(tmp_path)
    settings = _settings(tmp_path, workers=2)
    (tmp_path / "calls").symlink_to(SAMPLES / "calls")
    tasks = [Row(i, f"C00{i}", "B1001", f"calls/C00{i}.wav", 1) for i in range(1, 7)]  # relative to the cwd
    assert not ray.is_initialized()
    seen = []
    for result in map_ray(settings, tasks, address=None, in_flight_per_actor=1):
        if not seen:
            nodes = [n for n in ray.nodes() if n["Alive"]]
            assert len(nodes) == 1 and nodes[0]["NodeManagerAddress"] == LOOPBACK
            assert ray.cluster_resources().get("CPU") == 2
        seen.append(result)
    assert sorted(r.row.row for r in seen) == list(range(1, 7))
    assert all(r.row in tasks for r in seen)  # the rows as given (relative paths), not the shipped ones
    assert all(r.status in ("ok", "insufficient_speech") for r in seen)
    assert sum(r.status == "ok" for r in seen) >= 5
    assert not ray.is_initialized()  # the instance map_ray started is gone
