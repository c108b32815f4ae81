"""The ``voicecheck`` command: parse, call, render. The only place that prints or exits."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from .config import Settings, load_settings
from .errors import VoicecheckError

EXIT_MATCH, EXIT_MISMATCH, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


class Commands(TyperGroup):
    """The command group: the one place an error becomes a message and an exit code.

    A VoicecheckError is one line on stderr and exit 2; anything unexpected too (never a traceback,
    never exit 1, which means "mismatch"): the traceback goes to the debug log only.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except VoicecheckError as e:
            fail(str(e))
        except Exception as e:  # noqa: BLE001 - the CLI boundary: one line, exit 2, never a traceback
            logging.getLogger("voicecheck").debug("unexpected error", exc_info=True)
            fail(
                f"unexpected {type(e).__name__}: {str(e)[:300]} (a bug or a broken installation; run with "
                "VOICECHECK_DEBUG=1 for details)"
            )


app = typer.Typer(
    cls=Commands,
    help="Voiceprint consistency checks for call-centre recordings: is the customer on this call the borrower?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
store_app = typer.Typer(help="Inspect and edit the voiceprint store.", no_args_is_help=True)
app.add_typer(store_app, name="store")
watch_app = typer.Typer(
    help="Watchlist of known proxy-agent voices, searched on every checked call.", no_args_is_help=True
)
app.add_typer(watch_app, name="watchlist")
agents_app = typer.Typer(
    help="Collectors' own voiceprints, removed from mono recordings before scoring.", no_args_is_help=True
)
app.add_typer(agents_app, name="agents")
cohort_app = typer.Typer(help="In-domain cohort of unlabelled call embeddings.", no_args_is_help=True)
app.add_typer(cohort_app, name="cohort")
key_app = typer.Typer(
    help="The encryption key of the biometric data (voiceprints, call embeddings, watchlist).", no_args_is_help=True
)
app.add_typer(key_app, name="key")
audit_app = typer.Typer(help="The audit log: who checked, enrolled or erased whom.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
backend_app = typer.Typer(
    help="Back-ends: the trained transform scores are computed in, and one learnt from this deployment's calls.",
    no_args_is_help=True,
)
app.add_typer(backend_app, name="backend")

NOUN = {"borrower": "borrower", "agent": "collector"}
EXIT_BY_VERDICT = {
    "match": EXIT_MATCH,
    "mismatch": EXIT_MISMATCH,
    "inconclusive": EXIT_INCONCLUSIVE,
    "error": EXIT_USAGE,
}

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Voiceprint store directory [env VOICECHECK_STORE; default ./enrollment]."),
]
EmbOpt = Annotated[
    Path | None,
    typer.Option(
        "--embeddings",
        help="Workspace with models.toml and call embeddings [env VOICECHECK_EMBEDDINGS; default ./embeddings].",
    ),
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Model key in models.toml: ge2e (default, offline) or ecapa.")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu or cuda.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML config file [env VOICECHECK_CONFIG; default ./voicecheck.toml].")
]
ChannelOpt = Annotated[
    int | None, typer.Option("--channel", help="Customer channel of stereo audio, 0-based [default 1].")
]
ThresholdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--threshold",
        metavar="MODE=VALUE",
        help="Decision threshold for one scoring mode, e.g. lda+asnorm=2.1 (overrides the calibrated one for "
        "that mode only; repeat for several modes).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="The back-end to score with: auto (the model's shipped one), adapted (the newest one trained on this "
        "deployment's calls), a .npz path, or '' (none) [setting backend_file; default auto].",
    ),
]
ConsentOpt = Annotated[
    str | None,
    typer.Option(
        "--consent",
        help="Consent reference for these recordings (e.g. the signed form's id); required: voiceprints are "
        "biometric data. A manifest may give one per row in a consent column instead.",
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Enroll recordings the checks refuse (a voice that does not match the existing voiceprint, or audio "
        "already enrolled for someone else); every forced recording is recorded in the store and the audit log.",
    ),
]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"voicecheck: error: {message}", err=True)
    raise typer.Exit(code)


def settings_from(config: Path | None = None, threshold: list[str] | None = None, **overrides: Any) -> Settings:
    from .config import parse_thresholds

    if threshold:
        overrides["thresholds"] = {**load_settings(config).thresholds, **parse_thresholds(threshold)}
    return load_settings(config, **{k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()})


def run(fn: Any) -> Any:
    """Call ``fn`` and turn any VoicecheckError into one clear line and exit code 2."""
    try:
        return fn()
    except VoicecheckError as e:
        fail(str(e))


# -- enroll ------------------------------------------------------------------------------------------


@app.command()
def enroll(
    borrower_id: Annotated[str | None, typer.Argument(help="Borrower to enroll.")] = None,
    audio: Annotated[list[Path] | None, typer.Argument(help="Recordings of the borrower's voice.")] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="CSV with columns borrower_id,audio[,consent].")
    ] = None,
    consent: ConsentOpt = None,
    force: ForceOpt = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Forget earlier recordings of these borrowers first.")
    ] = False,
    channel: ChannelOpt = None,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threshold: ThresholdOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Build or extend borrowers' voiceprints from recordings of their voice (with their consent).

    A recording whose voice does not match the borrower's existing voiceprint, or that is already
    enrolled for someone else, is refused unless --force.
    """
    from .manifest import read_rows

    if manifest is None and (borrower_id is None or not audio):
        fail("give BORROWER_ID and one or more AUDIO files, or --manifest enroll.csv")
    if manifest is not None and (borrower_id or audio):
        fail("give either BORROWER_ID AUDIO... or --manifest, not both")
    settings = run(
        lambda: settings_from(
            config, store=store, embeddings=embeddings, model=model, device=device, channel=channel, threshold=threshold
        )
    )
    items: list[tuple[str, str, str]]
    if manifest is not None:
        items = [
            (f.get("borrower_id", ""), f.get("audio", ""), f.get("consent", ""))
            for _, f in run(lambda: list(read_rows(manifest, ("borrower_id", "audio"))))
        ]
    else:
        items = [(str(borrower_id), str(a), "") for a in audio or []]
    from .pipeline import enroll_recordings

    failures = run(lambda: enroll_recordings(items, settings, replace, typer.echo, consent=consent or "", force=force))
    if failures:
        typer.echo(f"voicecheck: {failures} recording(s) not enrolled; see above", err=True)
        raise typer.Exit(EXIT_USAGE)


# -- store -------------------------------------------------------------------------------------------


@store_app.command("list")
def store_list(store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List enrolled borrowers."""
    list_voiceprints("borrower", store, config, as_json)


def list_voiceprints(kind: str, store: Path | None, config: Path | None, as_json: bool) -> None:
    """Print the voiceprints of one kind (borrower or agent): counts and times, never vectors."""
    from .crypto import cipher_for
    from .enrollment import VoiceprintStore

    settings = run(lambda: settings_from(config, store=store))
    rows = run(lambda: VoiceprintStore(settings.store, cipher_for(settings)).summaries(kind))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(
            f"no collectors enrolled in {settings.store}" if kind == "agent" else f"no voiceprints in {settings.store}"
        )
        return
    typer.echo(f"{NOUN[kind]:<16} {'model':<26} {'recordings':>10} {'speech s':>9}  updated")
    for r in rows:
        typer.echo(
            f"{r['id']!s:<16} {r['model']!s:<26} {r['recordings']:>10} {r['speech_seconds']:>9.1f}  {r['updated_at']}"
        )


def remove_voiceprint(kind: str, owner_id: str, store: Path | None, config: Path | None) -> None:
    """Delete one voiceprint of a kind; exit 3 when there is none."""
    from .erasure import remove_voiceprint as remove

    settings = run(lambda: settings_from(config, store=store))
    n = run(lambda: remove(settings, owner_id, kind))
    if n == 0:
        fail(f"{NOUN[kind]} {owner_id!r} has no voiceprint in {settings.store}", EXIT_INCONCLUSIVE)
    typer.echo(f"removed {'collector ' if kind == 'agent' else ''}{owner_id} ({n} recording(s))")
    if kind == "borrower":
        typer.echo(f"(their call embeddings are kept; 'voicecheck erase {owner_id}' removes everything)")


@store_app.command("show")
def store_show(borrower_id: str, store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show one borrower's voiceprint: model, recordings, speech (never the vector)."""
    from .audit import audit_log
    from .crypto import cipher_for
    from .enrollment import VoiceprintStore

    settings = run(lambda: settings_from(config, store=store))
    db = run(lambda: VoiceprintStore(settings.store, cipher_for(settings)))
    recs = db.recordings(borrower_id)
    run(lambda: audit_log(settings, db.cipher).record("store.show", borrower_id=borrower_id, recordings=len(recs)))
    if not recs:
        fail(f"borrower {borrower_id!r} has no voiceprint in {settings.store}", EXIT_INCONCLUSIVE)
    summary = [s for s in db.summaries("borrower") if s["id"] == borrower_id]
    if as_json:
        typer.echo(json.dumps({"voiceprints": summary, "recordings": recs}, indent=2))
        return
    for s in summary:
        typer.echo(
            f"{borrower_id}: model {s['model']} ({s['dimension']}-d), {s['recordings']} recording(s), "
            f"{s['speech_seconds']:.1f} s speech, created {s['created_at']}, updated {s['updated_at']}"
        )
    for r in recs:
        forced = f"  FORCED: {r['forced']}" if r.get("forced") else ""
        typer.echo(
            f"  {r['audio']}  {r['band']}band  {r['speech_seconds']:.1f} s  sha256 {str(r['content_hash'])[:12]}"
            f"  consent {r['consent']}{forced}"
        )


@store_app.command("remove")
def store_remove(borrower_id: str, store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Delete a borrower's voiceprint (their call embeddings stay: 'voicecheck erase' removes everything)."""
    remove_voiceprint("borrower", borrower_id, store, config)


@store_app.command("migrate")
def store_migrate(store: StoreOpt = None, embeddings: EmbOpt = None, config: ConfigOpt = None) -> None:
    """Upgrade older stores in place: encrypt their vectors with the key, add the consent columns."""
    from .protection import migrate_stores

    settings = run(lambda: settings_from(config, store=store, embeddings=embeddings))
    for line in run(lambda: migrate_stores(settings)):
        typer.echo(line)


# -- data protection: key, erase, purge, audit ----------------------------------------------------


@key_app.command("init")
def key_init(config: ConfigOpt = None, store: StoreOpt = None, embeddings: EmbOpt = None) -> None:
    """Create the encryption key (0600 file; default $XDG_CONFIG_HOME/voicecheck/key); never overwrites one."""
    from .protection import init_key

    settings = run(lambda: settings_from(config, store=store, embeddings=embeddings))
    path, kid = run(lambda: init_key(settings))
    typer.echo(f"key {kid} created in {path} (0600). Back it up somewhere safe: without it the stores cannot be read.")


@key_app.command("show")
def key_show(config: ConfigOpt = None, store: StoreOpt = None, embeddings: EmbOpt = None) -> None:
    """Where the key comes from and its id (never the key itself)."""
    from .protection import describe_key

    settings = run(lambda: settings_from(config, store=store, embeddings=embeddings))
    d = run(lambda: describe_key(settings))
    if d["source"] is None:
        typer.echo(f"encryption: {d['encryption']}")
        return
    retired = [k for k in d["keys"] if k != d["current"]]
    typer.echo(f"encryption: {d['encryption']}; key {d['current']} from {d['source']}")
    if retired:
        typer.echo(f"older keys kept for decryption only: {', '.join(retired)}")


@key_app.command("rotate")
def key_rotate(
    keep_old: Annotated[
        bool, typer.Option("--keep-old", help="Keep the old key in the key file (other folders still use it).")
    ] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
) -> None:
    """Re-encrypt the voiceprint and call stores and re-sign the audit log under a new key."""
    from .protection import rotate_key

    settings = run(lambda: settings_from(config, store=store, embeddings=embeddings))
    r = run(lambda: rotate_key(settings, keep_old))
    typer.echo(
        f"key rotated: {r['blobs']} blob(s) re-encrypted and {r['audit_lines']} audit line(s) re-signed under key "
        f"{r['new']}; old key(s) {', '.join(r['old'])} " + ("dropped" if r["dropped_old"] else "kept for decryption")
    )


@app.command()
def erase(
    borrower_id: Annotated[str, typer.Argument(help="Borrower whose voice data is to be erased.")],
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase a borrower's voice data: voiceprint, calls and their embeddings, watchlist entries made from them."""
    from .erasure import erase as erase_borrower

    settings = run(lambda: settings_from(config, store=store, embeddings=embeddings))
    c = run(lambda: erase_borrower(settings, borrower_id))
    if as_json:
        typer.echo(json.dumps({"borrower_id": borrower_id, **c}, ensure_ascii=False))
        return
    labels = f" ({', '.join(c['watchlist_labels'])})" if c["watchlist_labels"] else ""
    typer.echo(
        f"erased {borrower_id}: {c['recordings']} enrollment recording(s), {c['calls']} call(s), "
        f"{c['embeddings']} call embedding(s), {c['watchlist_entries']} watchlist entr(y/ies){labels}"
    )
    if c["shared_calls"]:
        typer.echo(
            f"note: {c['shared_calls']} other borrower(s)' call(s) had the same audio; their embedding is gone and "
            "the next batch embeds them again"
        )


@app.command()
def purge(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age past which call embeddings are removed, e.g. 90d (days).")
    ],
    embeddings: EmbOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove call embeddings (and their call links) stored longer ago than --older-than."""
    from .erasure import purge as purge_calls

    days = run(lambda: parse_days(older_than))
    settings = run(lambda: settings_from(config, store=store, embeddings=embeddings))
    c = run(lambda: purge_calls(settings, days))
    typer.echo(f"purged {c['embeddings']} call embedding(s) and {c['calls']} call link(s) older than {days:g} days")


def parse_days(value: str) -> float:
    """``"90d"`` or ``"90"`` -> 90.0 days.

    Raises:
        UsageError: anything else, or a negative or non-finite number.
    """
    import math

    from .errors import UsageError

    text = value.strip().lower()
    number = text[:-1] if text.endswith("d") else text
    try:
        days = float(number)
    except ValueError:
        days = float("nan")
    if not (math.isfinite(days) and days >= 0):
        raise UsageError(f"--older-than {value!r}: give an age in days such as 90d")
    return days


@audit_app.command("verify")
def audit_verify(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Check the audit log's hash chain: exit 0 when intact, 1 naming the first bad line."""
    from .audit import audit_path, verify
    from .crypto import cipher_for

    settings = run(lambda: settings_from(config, store=store))
    path = audit_path(settings)
    result = run(lambda: verify(path, cipher_for(settings)))
    if not result.ok:
        typer.echo(f"voicecheck: error: audit log {path}: line {result.bad_line} {result.problem}", err=True)
        raise typer.Exit(EXIT_MISMATCH)
    typer.echo(f"audit log {path}: {result.lines} line(s), chain intact; last hash {result.last_hash}")


@audit_app.command("show")
def audit_show(
    borrower: Annotated[str, typer.Option("--borrower", help="The borrower whose history to list.")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List every audited event that concerns one borrower (for a subject-access request)."""
    from .audit import audit_path, entries

    settings = run(lambda: settings_from(config, store=store))
    found = run(lambda: list(entries(audit_path(settings), borrower)))
    if as_json:
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    if not found:
        typer.echo(f"no audited event concerns {borrower}")
    skip = {"seq", "time", "user", "host", "pid", "program", "event", "prev", "hash", "alg", "kid", "borrower_id"}
    for e in found:
        rest = ", ".join(f"{k}={v}" for k, v in e.items() if k not in skip)
        typer.echo(f"{e.get('time')}  {e.get('event'):<16} by {e.get('user')}@{e.get('host')}  {rest}")


# -- check -------------------------------------------------------------------------------------------


@app.command()
def check(
    audio: Annotated[Path, typer.Argument(help="Recorded call (WAV/FLAC/OGG/MP3; stereo: customer on --channel).")],
    borrower: Annotated[str, typer.Option("--borrower", help="Borrower the customer claims to be.")],
    channel: ChannelOpt = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threshold: ThresholdOpt = None,
    config: ConfigOpt = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Draw the similarity timeline to this PNG.")] = None,
) -> None:
    """Check one call: is the customer's voice the borrower's? Exit 0 match, 1 mismatch, 3 inconclusive, 2 error."""
    from .pipeline import check_one

    settings = run(
        lambda: settings_from(
            config, store=store, embeddings=embeddings, model=model, device=device, channel=channel, threshold=threshold
        )
    )
    if plot is not None:
        from .files import check_writable

        check_writable(plot)  # before any work: a bad --plot path must not cost the verdict
    result = check_one(audio, borrower, settings, timeline=plot is not None)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        typer.echo(render_result(result.to_dict()))
    if result.verdict == "error":
        typer.echo(f"voicecheck: error: {result.reason}", err=True)
    if plot is not None and result.timeline:
        from .report import plot_timeline

        plot_timeline(result.to_dict(), plot)
        typer.echo(f"timeline drawn to {plot}", err=True)
    raise typer.Exit(EXIT_BY_VERDICT[result.verdict])


def render_result(r: dict[str, Any]) -> str:
    verdict = r["verdict"].upper() + (f" ({r['reason']})" if r.get("reason") else "")
    lines = [
        f"call       {r['audio']}" + ("" if r.get("channel") is None else f" (channel {r['channel']})"),
        f"borrower   {r['borrower_id']}",
        f"verdict    {verdict}",
    ]
    if r.get("score") is not None:
        lines.append(
            f"score      {r['score']:.3f}  (threshold {r['threshold']:.3f}; higher = more alike; "
            f"scoring {r.get('scoring')})"
        )
        if r.get("llr") is not None:
            lines.append(f"llr        {r['llr']:+.2f}  (log-likelihood ratio, same speaker vs not)")
    if r.get("speech_seconds") is not None:
        total = f" of {r['duration_s']:.1f} s recorded" if r.get("duration_s") else ""
        lines.append(f"speech     {r['speech_seconds']:.1f} s net speech{total}")
    if r.get("speaker_change_s") is not None:
        lines.append(f"takeover   voice changes at {r['speaker_change_s']:.1f} s")
    for hit in r.get("watchlist_hits") or []:
        lines.append(f"watchlist  {hit['label']} (score {hit['score']:.3f}, source {hit.get('source')})")
    lines.append(f"model      {r.get('model')}")
    return "\n".join(lines)


# -- batch -------------------------------------------------------------------------------------------


@app.command()
def batch(
    manifest: Annotated[Path, typer.Argument(help="CSV with call_id,borrower_id,audio[,customer_channel].")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (results.jsonl, summary.json).")],
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes [default 1].")] = None,
    channel: ChannelOpt = None,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    threshold: ThresholdOpt = None,
    config: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local (process pool) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address [default: start a local Ray on 127.0.0.1].")
    ] = None,
) -> None:
    """Check every call of a manifest; re-running with the same --out resumes where it stopped."""
    from .batch import run_batch, write_report

    if engine not in ("local", "ray"):
        fail(f"--engine must be local or ray, got {engine!r}")
    if address is not None and engine != "ray":
        fail("--address needs --engine ray")

    settings = run(
        lambda: settings_from(
            config,
            store=store,
            embeddings=embeddings,
            model=model,
            device=device,
            channel=channel,
            threshold=threshold,
            workers=workers,
        )
    )
    if settings.workers < 1:
        fail(f"--workers must be at least 1, got {settings.workers}")
    total = run(lambda: count_rows(manifest))
    from tqdm import tqdm

    with tqdm(total=total, unit="call", file=sys.stderr, disable=quiet, dynamic_ncols=True) as bar:
        summary = run(lambda: run_batch(manifest, out, settings, progress=bar.update, engine=engine, address=address))
    report = run(lambda: write_report(out, settings, summary))
    print_summary(summary, out)
    typer.echo(f"report: {report}")


@app.command()
def rescore(
    out: Annotated[Path, typer.Option("--out", help="Output directory for the new results.jsonl and summary.json.")],
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Calls to rescore [default: every stored call].")
    ] = None,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    threshold: ThresholdOpt = None,
    backend: BackendOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Re-apply thresholds, calibration, a new cohort or back-end to stored call embeddings (no audio decoded)."""
    from .batch import rescore as rescore_calls

    settings = run(
        lambda: settings_from(
            config, store=store, embeddings=embeddings, model=model, threshold=threshold, backend_file=backend
        )
    )
    print_summary(run(lambda: rescore_calls(out, settings, manifest)), out)


@app.command("eval")
def eval_trials(
    trials: Annotated[
        Path, typer.Argument(help="CSV: enroll_audio,test_audio,label or borrower_id,audio|call_id,label.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory for metrics.json, scores.csv and det.png.")],
    channel: ChannelOpt = None,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    compare_backend: Annotated[
        str | None,
        typer.Option(
            "--compare-backend",
            help="Score the trials with this back-end too and report both: auto (the shipped one), adapted, "
            "a .npz path, or '' (none).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure accuracy on labelled trials: EER, minDCF, Cllr, impostors flagged at 1% and 5% false flags."""
    from .evaluate import evaluate

    settings = run(
        lambda: settings_from(
            config,
            store=store,
            embeddings=embeddings,
            model=model,
            device=device,
            channel=channel,
            backend_file=backend,
        )
    )
    m = run(lambda: evaluate(trials, out, settings, lambda line: typer.echo(line, err=True), compare_backend))
    if as_json:
        typer.echo(json.dumps(m, indent=2))
        return
    for line in eval_lines(m):
        typer.echo(line)
    for line in eval_lines(m.get("compare") or {}, "compared with "):
        typer.echo(line)
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'scores.csv'}, {out / 'det.png'}")


def eval_lines(m: dict[str, Any], lead: str = "") -> list[str]:
    """The figures of one back-end's evaluation (``evaluate``'s dict), as text."""
    if not m:
        return []
    lines = [
        f"{lead}{m['n_target']} target, {m['n_nontarget']} non-target trials ({m['errors']} skipped); "
        f"model {m['model']}, scoring {m['mode']}, back-end {m.get('backend') or 'none'}",
        f"EER {100 * m['eer']:.2f}%   minDCF(0.01) {m['min_dcf_0.01']:.3f}   minDCF(0.05) {m['min_dcf_0.05']:.3f}",
    ]
    if m.get("cllr") is not None:
        lines.append(f"Cllr {m['cllr']:.3f} bits (min {m['min_cllr']:.3f})")
    lines.append(
        f"impostors flagged: {100 * m['detect_at_1pct_ff']:.1f}% at 1% false flags, "
        f"{100 * m['detect_at_5pct_ff']:.1f}% at 5%"
    )
    return lines


@app.command()
def calibrate(
    trials: Annotated[Path, typer.Argument(help="Labelled trials CSV (as for eval).")],
    max_false_flag: Annotated[
        float, typer.Option("--max-false-flag", help="Fraction of genuine calls the threshold may flag.")
    ] = 0.05,
    at_llr: Annotated[
        float | None,
        typer.Option("--at-llr", help="Put the threshold where the calibrated LLR equals this (instead of a rate)."),
    ] = None,
    channel: ChannelOpt = None,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    backend: BackendOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fit score -> log-likelihood ratio and the threshold on labelled trials; results then carry llr.

    A calibration of a back-end mode holds for the back-end it was made with only.
    """
    from .evaluate import calibrate as fit

    if not 0 <= max_false_flag < 1:
        fail(f"--max-false-flag must be in [0, 1), got {max_false_flag}")
    settings = run(
        lambda: settings_from(
            config,
            store=store,
            embeddings=embeddings,
            model=model,
            device=device,
            channel=channel,
            backend_file=backend,
        )
    )
    c = run(lambda: fit(trials, settings, max_false_flag, lambda line: typer.echo(line, err=True), at_llr))
    rule = f"llr {at_llr:+.2f}" if at_llr is not None else f"<= {100 * max_false_flag:.1f}% genuine flagged"
    typer.echo(
        f"scoring mode {c['mode']}: threshold {c['threshold']:.4f} ({rule}; on these {c['n_target']} genuine and "
        f"{c['n_nontarget']} impostor trials it flags {100 * c['genuine_flagged']:.1f}% and "
        f"{100 * c['impostors_flagged']:.1f}%), llr = {c['calibration']['a']:.3f} * score + "
        f"{c['calibration']['b']:.3f}; saved to {c['path']}"
    )


def print_summary(summary: dict[str, Any], out: Path) -> None:
    """One line of counts, then the flagged calls (mismatches first)."""
    from .report import RESULTS, read_jsonl

    v = summary["verdicts"]
    typer.echo(
        f"{summary['calls']} calls: {v['match']} match, {v['mismatch']} mismatch, {v['inconclusive']} inconclusive, "
        f"{v['error']} error; {summary['audio_seconds'] / 3600:.2f} h audio in {summary['wall_seconds']:.1f} s -> {out}"
    )
    if str(summary.get("encryption", "")).startswith("none"):
        typer.echo("WARNING: biometric data is stored UNENCRYPTED (encryption = false)")
    for line in operating_lines(summary.get("operating_point") or {}):
        typer.echo(line)
    trained = summary.get("backend_training")
    if trained:
        typer.echo(f"in-domain back-end: {trained.get('file') or trained.get('reason')} ({trained['status']})")
    flagged = [r for r in read_jsonl(out / RESULTS) if r["verdict"] != "match"]
    flagged.sort(key=lambda r: ("mismatch", "error", "inconclusive").index(r["verdict"]))
    if flagged:
        typer.echo("flagged calls:")
    for r in flagged[:50]:
        typer.echo(f"  {r['call_id']:<12} {r['borrower_id']:<12} {r['verdict']:<12} {why(r)}")
    if len(flagged) > 50:
        typer.echo(f"  ... and {len(flagged) - 50} more in {out / RESULTS}")


def operating_lines(bands: dict[str, Any]) -> list[str]:
    """The thresholds a run used, per band, and tonight's estimated share of honest borrowers flagged."""
    lines = []
    for band, p in bands.items():
        estimate = ""
        if p.get("estimated_false_flag_rate") is not None:
            estimate = (
                f"; estimated honest borrowers flagged {100 * p['estimated_false_flag_rate']:.1f}% "
                f"(all calls flagged {100 * p['flagged_share']:.1f}%)"
            )
        lines.append(f"{band} band, {p.get('mode')}: threshold {p.get('threshold')} from {p.get('source')}{estimate}")
        if p.get("warning"):
            lines.append(f"WARNING: {p['warning']}")
    return lines


@backend_app.command("train")
def backend_train(
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train a back-end on this deployment's own calls: those the check accepts with a wide margin (and
    QA-reviewed genuine ones), labelled by borrower, adapted from the shipped back-end's statistics.

    Writes <embeddings>/backends/<model>-in-domain-<time>.npz; backend_file = "adapted" selects the newest.
    Refused while fewer than adapt_min_borrowers borrowers have two such calls.
    """
    from .adapt import train_backend

    settings = run(lambda: settings_from(config, store=store, embeddings=embeddings, model=model))
    done = run(lambda: train_backend(settings, report=lambda line: typer.echo(line, err=True)))
    w = done.backend.info.get("weights", {})
    typer.echo(
        f"in-domain back-end {done.path}: {len(done.labels.calls)} calls of {len(done.labels.per_borrower)} "
        f"borrowers ({done.labels.borrowers_with_two} with two or more), weights within {w.get('within', 0):.2f} "
        f"between {w.get('between', 0):.2f}"
    )


@backend_app.command("list")
def backend_list(
    embeddings: EmbOpt = None, model: ModelOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """The in-domain back-ends of the model in the workspace (newest last) and the one the settings select."""
    from .adapt import describe_backends

    settings = run(lambda: settings_from(config, embeddings=embeddings, model=model))
    rows, active = run(lambda: describe_backends(settings))
    if as_json:
        typer.echo(json.dumps({"backends": rows, "active": active}, indent=2))
        return
    for r in rows:
        typer.echo(
            f"{r['file']}  {r['calls']} calls, {r['borrowers_with_two_calls']} borrowers with two or more, "
            f"margin {r['adapt_max_false_accept']}"
        )
    typer.echo(f"backend_file = {settings.backend_file!r}: {active or 'no back-end'}")


@cohort_app.command("build")
def cohort_build(
    manifest: Annotated[
        Path, typer.Argument(help="CSV with an audio column (customer_channel optional): unlabelled calls.")
    ],
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes.")] = None,
    channel: ChannelOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Embed unlabelled in-domain calls into the call-embedding store, for centring and AS-norm."""
    from .batch import build_cohort

    settings = run(
        lambda: settings_from(
            config, embeddings=embeddings, model=model, device=device, channel=channel, workers=workers
        )
    )
    added, failed, total = run(lambda: build_cohort(manifest, settings, lambda line: typer.echo(line, err=True)))
    typer.echo(
        f"cohort: {added} call(s) embedded, {failed} skipped; {total} {settings.model} call embeddings "
        f"stored in {settings.embeddings}"
    )


@app.command()
def consistency(
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Borrowers whose stored calls hold two or more distinct voices, with the calls per voice."""
    from .crosscall import inconsistent_borrowers

    settings = run(lambda: settings_from(config, embeddings=embeddings, model=model))
    found = run(lambda: inconsistent_borrowers(settings))
    if as_json:
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    if not found:
        typer.echo("no borrower's stored calls hold more than one voice")
    for b in found:
        typer.echo(f"{b['borrower_id']}: {len(b['voices'])} voices in {b['calls']} calls")
        for v in b["voices"]:
            typer.echo(f"  voice {v['voice']}: {', '.join(v['calls'])}")


@app.command("rings")
def rings_cmd(
    min_borrowers: Annotated[
        int, typer.Option("--min-borrowers", help="Least distinct borrowers one voice speaks for.")
    ] = 3,
    include_verified: Annotated[
        bool,
        typer.Option(
            "--include-verified",
            help="Let calls that match their own borrower's voiceprint join rings too (e.g. when an agent "
            "may have enrolled as the borrower).",
        ),
    ] = False,
    embeddings: EmbOpt = None,
    store: StoreOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Voices that speak as several different borrowers (approximate nearest-neighbour clustering).

    Two calls link when their similarity stands out against what each scores with other borrowers'
    calls, so the store needs a population (a few dozen calls or more) for the search to be reliable.
    Calls that pass the 1:1 check against their own borrower's voiceprint join no ring unless
    --include-verified is given.
    """
    from .crosscall import rings

    if min_borrowers < 2:
        fail(f"--min-borrowers must be at least 2, got {min_borrowers}")
    settings = run(lambda: settings_from(config, embeddings=embeddings, store=store, model=model))
    found = run(lambda: rings(settings, min_borrowers, include_verified=include_verified))
    if as_json:
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    if not found:
        typer.echo(f"no voice speaks for {min_borrowers} or more borrowers")
    for r in found:
        typer.echo(
            f"voice {r['voice']}: {len(r['borrowers'])} borrowers, {len(r['calls'])} calls, "
            f"cohesion {r['cohesion']:.3f}"
        )
        typer.echo(f"  borrowers: {', '.join(r['borrowers'])}")
        typer.echo(f"  calls:     {', '.join(r['calls'])}")


@watch_app.command("add")
def watch_add(
    label: Annotated[str, typer.Argument(help="Name for this voice, e.g. AGENT-0042.")],
    audio: Annotated[list[Path] | None, typer.Argument(help="Recordings of the voice.")] = None,
    call: Annotated[list[str] | None, typer.Option("--call", help="A call id already in the call store.")] = None,
    source: Annotated[str, typer.Option("--source", help="Where the voice comes from (case, institution).")] = "local",
    channel: ChannelOpt = None,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Add a known proxy-agent voice from recordings or from stored calls."""
    from .pipeline import watch_from

    if not audio and not call:
        fail("give one or more AUDIO files or --call CALL_ID")
    settings = run(lambda: settings_from(config, store=store, embeddings=embeddings, model=model, channel=channel))
    n = run(lambda: watch_from(label, [str(a) for a in audio or []], list(call or []), source, settings))
    typer.echo(f"watchlist: {label} added from {n} recording(s)/call(s)")


def watch_store(config: Path | None, store: Path | None, embeddings: Path | None, model: str | None) -> tuple[Any, Any]:
    """The voiceprint store holding the watchlist, and the model spec whose entries to use."""
    from .crypto import cipher_for
    from .embedders import model_spec
    from .enrollment import VoiceprintStore

    settings = run(lambda: settings_from(config, store=store, embeddings=embeddings, model=model))
    spec = run(lambda: model_spec(settings.model, settings.embeddings))
    return run(lambda: VoiceprintStore(settings.store, cipher_for(settings))), spec


@watch_app.command("list")
def watch_list(
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List watchlist voices (label, source, date, model)."""
    db, spec = watch_store(config, store, embeddings, model)
    name = spec.name
    rows = [
        {"label": e.label, "source": e.source, "added_on": e.added_on, "model": e.model}
        for e in run(lambda: db.watch_list(name))
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo(f"the watchlist for {name} is empty")
    for r in rows:
        typer.echo(f"{r['label']:<20} {r['added_on']:<12} {r['source']}")


@watch_app.command("remove")
def watch_remove(label: str, store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Remove a voice from the watchlist."""
    from .erasure import remove_watch_entry

    settings = run(lambda: settings_from(config, store=store))
    if run(lambda: remove_watch_entry(settings, label)) == 0:
        fail(f"no watchlist entry labelled {label!r}", EXIT_INCONCLUSIVE)
    typer.echo(f"watchlist: removed {label}")


@watch_app.command("export")
def watch_export(
    file: Path, store: StoreOpt = None, embeddings: EmbOpt = None, model: ModelOpt = None, config: ConfigOpt = None
) -> None:
    """Write the watchlist as a shareable file of embeddings (model name, no audio)."""
    from .enrollment import export_watchlist

    db, spec = watch_store(config, store, embeddings, model)
    name = spec.name
    n = run(lambda: export_watchlist(db, file, name))
    typer.echo(f"watchlist: exported {n} {name} voice(s) to {file}")


@watch_app.command("import")
def watch_import(
    file: Path,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite entries whose label exists.")] = False,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Merge a watchlist file shared by another team or institution."""
    from .enrollment import import_watchlist

    db, spec = watch_store(config, store, embeddings, model)
    added, skipped = run(lambda: import_watchlist(db, file, spec.name, spec.dimension, replace))
    typer.echo(f"watchlist: imported {added} voice(s), {skipped} skipped (label exists; --replace to overwrite)")


@agents_app.command("enroll")
def agents_enroll(
    agent_id: str,
    audio: Annotated[list[Path], typer.Argument(help="Recordings of the collector's voice.")],
    consent: ConsentOpt = None,
    force: ForceOpt = False,
    replace: Annotated[bool, typer.Option("--replace", help="Start this collector's voiceprint over.")] = False,
    channel: ChannelOpt = None,
    store: StoreOpt = None,
    embeddings: EmbOpt = None,
    model: ModelOpt = None,
    threshold: ThresholdOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Enroll a collector's voice (with their consent), so it can be removed from mono recordings."""
    from .pipeline import enroll_recordings

    settings = run(
        lambda: settings_from(
            config, store=store, embeddings=embeddings, model=model, channel=channel, threshold=threshold
        )
    )
    items = [(agent_id, str(a)) for a in audio]
    if run(lambda: enroll_recordings(items, settings, replace, typer.echo, "agent", consent or "", force)):
        raise typer.Exit(EXIT_USAGE)


@agents_app.command("list")
def agents_list(store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List enrolled collectors."""
    list_voiceprints("agent", store, config, as_json)


@agents_app.command("remove")
def agents_remove(agent_id: str, store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Delete a collector's voiceprint."""
    remove_voiceprint("agent", agent_id, store, config)


def why(r: dict[str, Any]) -> str:
    """A flagged record's reason in a few words."""
    reason = r.get("reason") or ""
    if reason == "voice_mismatch":
        return f"{reason} (score {r['score']:.3f} < {r['threshold']:.3f})"
    if reason == "speaker_change":
        return f"{reason} at {r['speaker_change_s']:.1f} s"
    if r.get("watchlist_hits"):
        hit = r["watchlist_hits"][0]
        return f"{reason} ({hit['label']}, score {hit['score']:.3f})"
    return reason


def count_rows(manifest: Path) -> int:
    """Rows of a call manifest (checks its header first, so a bad manifest fails before any model loads)."""
    from .manifest import CALL_COLUMNS, read_rows

    return sum(1 for _ in read_rows(manifest, CALL_COLUMNS))


def main() -> None:
    import os

    level = logging.DEBUG if os.environ.get("VOICECHECK_DEBUG") else logging.WARNING
    logging.basicConfig(level=level, format="voicecheck: %(levelname)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
