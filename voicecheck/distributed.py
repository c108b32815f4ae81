"""The Ray engine: phase 1 of a batch (embedding) on Ray actors, on one machine or a cluster.

Each actor is one :class:`voicecheck.workers.Worker` (the model loaded once) and runs the same
method as the local process pool (:meth:`voicecheck.workers.Worker.embed`, a few calls at a time).
Results stream back as they finish; at most ``in_flight_per_actor`` tasks per actor are queued, so
the driver's memory stays flat however long the manifest is.

Ray is optional (``pip install 'voicecheck[ray]'``) and imported only when this engine is used.
On a cluster every node needs voicecheck installed in the same Python environment, and the audio,
the embeddings workspace and the voiceprint store at the same absolute paths (shared storage):
paths are resolved to absolute paths on the driver before they are shipped.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import BackendUnavailableError, UsageError, VoicecheckError
from .manifest import Row
from .workers import Embedded, Worker, groups

log = logging.getLogger(__name__)

LOCAL_IP = "127.0.0.1"
"""A local Ray cluster binds here, never to the machine's external address."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError(
            "the ray engine needs the ray package, which is not installed; "
            "install it with: pip install 'voicecheck[ray]' (or use the local engine)"
        ) from None
    return ray


class _EmbedActor:
    """One Ray actor = one worker process with the model loaded once."""

    def __init__(self, settings: Settings, plugins: dict[str, str]) -> None:
        self.worker = Worker(settings, plugins)

    def embed(self, rows: list[Row]) -> list[Embedded]:
        return self.worker.embed(rows)

    def pid(self) -> int:
        return os.getpid()


def absolute_settings(settings: Settings) -> Settings:
    """``settings`` with the store and embeddings paths made absolute (actors may run elsewhere)."""
    return replace(
        settings, store=str(Path(settings.store).resolve()), embeddings=str(Path(settings.embeddings).resolve())
    )


def start_ray(settings: Settings, address: str | None) -> bool:
    """Connect to ``address``, or start a local Ray bound to 127.0.0.1 with ``settings.workers`` CPUs.

    On Linux Ray replaces a ``127.0.0.1`` node address by the machine's external address (and its
    servers then listen on every interface) unless its "no cluster" mode is on, so for a local
    instance that mode is switched on (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) and the node's
    address is checked after start-up.

    Returns:
        True when this call started or connected Ray (the caller shuts it down), False when Ray
        was already initialised in this process.

    Raises:
        BackendUnavailableError: ray is not installed.
        UsageError: the cluster at ``address`` cannot be reached, or a local Ray that did not stay
            on 127.0.0.1.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a batch server
    if address is None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is first imported
    ray = _import_ray()
    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    try:
        if address is None:
            _loopback_only(ray)
            ray.init(num_cpus=settings.workers, include_dashboard=False, _node_ip_address=LOCAL_IP, **common)
        else:
            ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise UsageError(f"cannot start or reach {where}: {e}") from None
    if address is None:
        bound = {n.get("NodeManagerAddress") for n in ray.nodes()}
        if bound != {LOCAL_IP}:
            ray.shutdown()
            raise UsageError(
                f"the local Ray instance bound to {', '.join(map(str, bound))} instead of {LOCAL_IP}; "
                "start a cluster yourself and pass its address"
            )
    return True


def _loopback_only(ray: Any) -> None:
    """Make Ray keep a local node on 127.0.0.1 even when ray was imported before the variable was set."""
    try:
        constants = ray._private.ray_constants
    except AttributeError:
        return
    if getattr(constants, "ENABLE_RAY_CLUSTER", False):
        constants.ENABLE_RAY_CLUSTER = False


def _absolute(row: Row) -> Row:
    """The row with its audio path made absolute (an actor's working directory is not the driver's)."""
    return replace(row, audio=str(Path(row.audio).resolve())) if row.audio else row


def _get(ray: Any, ref: Any) -> list[Embedded]:
    """``ray.get`` that surfaces a voicecheck error raised in an actor (e.g. a missing model) as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, VoicecheckError):
            raise e.cause from None
        raise
    except ray.exceptions.RayActorError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, VoicecheckError):
            raise cause from None
        raise VoicecheckError(
            f"a Ray worker died during the batch ({e}); results so far are kept: re-run the batch to resume"
        ) from None


def map_ray(
    settings: Settings,
    tasks: Iterable[Row],
    address: str | None = None,
    in_flight_per_actor: int = 2,
) -> Iterator[Embedded]:
    """Run :meth:`voicecheck.workers.Worker.embed` over ``tasks`` on ``settings.workers`` Ray actors.

    Each actor call takes ``settings.calls_per_task`` rows. Results come back per row in completion
    order (not task order), each an :class:`voicecheck.workers.Embedded`
    (numpy arrays and exceptions pickle across processes).

    Args:
        settings: run settings; ``workers`` actors of 1 CPU each are created.
        tasks: manifest rows (:class:`voicecheck.manifest.Row`), streamed; audio paths are made absolute
            before they are shipped, and each result's ``row`` is the row as given.
        address: a running cluster ("ray://host:10001" or "host:6379"); None starts a local Ray on
            127.0.0.1 with ``settings.workers`` CPUs, shut down when the iterator ends.
        in_flight_per_actor: tasks (groups of rows) queued per actor (bounds driver and object-store memory).

    Raises:
        BackendUnavailableError: ray is not installed.
        UsageError: ``settings.workers`` < 1 or the cluster cannot be reached.
    """
    if settings.workers < 1:
        raise UsageError(f"workers must be at least 1, got {settings.workers}")
    owned = start_ray(settings, address)
    ray = _import_ray()
    actors: list[Any] = []
    try:
        remote_cls = ray.remote(num_cpus=1)(_EmbedActor)
        shipped = absolute_settings(settings)
        from .embedders import registered

        actors = [remote_cls.remote(shipped, registered()) for _ in range(settings.workers)]
        todo = groups(tasks, max(1, settings.calls_per_task))
        pending: dict[Any, tuple[Any, list[Row]]] = {}  # object ref -> (actor, the rows as given)
        free: deque[Any] = deque(a for a in actors for _ in range(max(1, in_flight_per_actor)))

        def submit() -> None:
            while free:
                group = next(todo, None)
                if group is None:
                    return
                actor = free.popleft()
                pending[actor.embed.remote([_absolute(t) for t in group])] = (actor, group)

        submit()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                actor, group = pending.pop(ref)
                free.append(actor)
                results = _get(ray, ref)
                submit()
                for row, result in zip(group, results, strict=True):
                    yield replace(result, row=row)  # the caller's row, with the audio path as the manifest gave it
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - best effort clean-up of an actor that may be gone
                log.debug("could not kill a Ray actor", exc_info=True)
        if owned:
            ray.shutdown()
