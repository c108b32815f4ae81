"""The ``voicecheck`` command: parse, call, render. The only place that prints or exits.

Every command reads as three steps: its options are parsed (the settings options come from one table,
:data:`SETTING_OPTIONS`, given to a command by :func:`uses` and turned into one :class:`Settings` by
:func:`build_settings`), one library call does the work, and :mod:`voicecheck.render` turns the
result into lines. Errors are not handled here but in :class:`Commands`, the group every command
sits under: a :class:`VoicecheckError` is one line on stderr and exit 2.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from . import render
from .config import Settings, load_settings
from .errors import VoicecheckError

EXIT_MATCH, EXIT_MISMATCH, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
EXIT_BY_VERDICT = {
    "match": EXIT_MATCH,
    "mismatch": EXIT_MISMATCH,
    "inconclusive": EXIT_INCONCLUSIVE,
    "error": EXIT_USAGE,
}


class Commands(TyperGroup):
    """The command group: the one place an error becomes a message and an exit code.

    A VoicecheckError is one line on stderr and exit 2; anything unexpected too (never a traceback,
    never exit 1, which means "mismatch"): the traceback goes to the debug log only. Every sub-app
    is a Commands group too, so the same handler holds however a command is reached.
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


class ReviewCommands(Commands):
    """``voicecheck review``: ``review CALL_ID --label ...`` is short for ``review call CALL_ID --label ...``;
    ``list``, ``export`` and ``import`` are its other commands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["call", *args]
        return super().parse_args(ctx, args)


def group(help: str, cls: type[Commands] = Commands) -> typer.Typer:
    """A command group under the one error handler (help printed as plain text: option help keeps its
    brackets, flags show no type)."""
    return typer.Typer(
        cls=cls,
        help=help,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        pretty_exceptions_show_locals=False,
        add_completion=False,
    )


app = group("Voiceprint consistency checks for call-centre recordings: is the customer on this call the borrower?")
store_app = group("Inspect and edit the voiceprint store.")
watch_app = group("Watchlist of known proxy-agent voices, searched on every checked call.")
agents_app = group("Collectors' own voiceprints, removed from mono recordings before scoring.")
cohort_app = group("In-domain cohort of unlabelled call embeddings.")
key_app = group("The encryption key of the biometric data (voiceprints, call embeddings, watchlist).")
audit_app = group("The audit log: who checked, enrolled or erased whom.")
backend_app = group(
    "Back-ends: the trained transform scores are computed in, and one learnt from this deployment's calls."
)
review_app = group(
    "QA review of flagged calls: voicecheck review CALL_ID --label genuine|impostor|unsure [--note TEXT] records "
    "a decision; list, export and import decisions (CSV; the report's review queue downloads one).",
    ReviewCommands,
)
for _sub, _name in (
    (review_app, "review"),
    (store_app, "store"),
    (watch_app, "watchlist"),
    (agents_app, "agents"),
    (cohort_app, "cohort"),
    (key_app, "key"),
    (audit_app, "audit"),
    (backend_app, "backend"),
):
    app.add_typer(_sub, name=_name)


# -- the settings options: defined once, given to commands by @uses ----------------------------------

SETTING_OPTIONS: dict[str, Any] = {
    "store": Annotated[
        Path | None,
        typer.Option("--store", help="Voiceprint store directory [env VOICECHECK_STORE; default ./enrollment]."),
    ],
    "embeddings": Annotated[
        Path | None,
        typer.Option(
            "--embeddings",
            help="Workspace with models.toml and call embeddings [env VOICECHECK_EMBEDDINGS; default ./embeddings].",
        ),
    ],
    "model": Annotated[
        str | None,
        typer.Option(
            "--model", help="Model key in models.toml: ge2e (default, offline), ecapa, or one you declare (onnx)."
        ),
    ],
    "device": Annotated[str | None, typer.Option("--device", help="cpu or cuda.")],
    "channel": Annotated[
        int | None, typer.Option("--channel", help="Customer channel of stereo audio, 0-based [default 1].")
    ],
    "threshold": Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            metavar="MODE=VALUE",
            help="Decision threshold for one scoring mode, e.g. lda+asnorm=2.1 (overrides the calibrated one for "
            "that mode only; repeat for several modes).",
        ),
    ],
    "workers": Annotated[int | None, typer.Option("--workers", help="Worker processes [default: CPUs usable].")],
    "backend_file": Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="The back-end to score with: auto (the model's shipped one), adapted (the newest one trained on "
            "this deployment's calls), a .npz path, or '' (none) [setting backend_file; default auto].",
        ),
    ],
    "config": Annotated[
        Path | None,
        typer.Option("--config", help="TOML config file [env VOICECHECK_CONFIG; default ./voicecheck.toml]."),
    ],
}
"""Every option that sets a :class:`Settings` field, by parameter name (precedence: defaults < config
file < environment < these flags)."""

STORE = ("store",)
DATA = (*STORE, "embeddings")
MODEL = (*DATA, "model")
EMBED = (*MODEL, "device", "channel")
SCORE = (*EMBED, "threshold")
"""The option groups commands are built from: the voiceprint store; both data folders; + the model;
+ how a recording is embedded; + the decision threshold. ``--config`` comes with every group."""

F = TypeVar("F", bound=Callable[..., Any])


def uses(*groups: str | tuple[str, ...]) -> Callable[[F], F]:
    """Give a command the settings options named in ``groups`` (and ``--config``), and call it with
    ``settings=`` the :class:`Settings` they make instead of the options themselves.

    The command's own parameters come first in its help, then the settings options in table order.
    """
    wanted = {n for g in groups for n in ((g,) if isinstance(g, str) else g)} | {"config"}
    names = [n for n in SETTING_OPTIONS if n in wanted]

    def decorate(fn: F) -> F:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(fn, eval_str=True).parameters.values()
            if p.name != "settings"
        ]
        shared = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SETTING_OPTIONS[n])
            for n in names
        ]

        def command(**kwargs: Any) -> Any:
            options = {n: kwargs.pop(n) for n in names}
            return fn(settings=build_settings(**options), **kwargs)

        command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in own + shared}
        command.__name__, command.__qualname__, command.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        command.__module__ = fn.__module__
        return command  # type: ignore[return-value]

    return decorate


def build_settings(config: Path | None = None, threshold: list[str] | None = None, **overrides: Any) -> Settings:
    """The one way the command builds Settings: defaults < config file < environment < the flags given.

    Raises:
        UsageError: a bad config file, environment value or flag.
    """
    from .config import parse_thresholds

    if threshold:
        overrides["thresholds"] = {**load_settings(config).thresholds, **parse_thresholds(threshold)}
    return load_settings(config, **{k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()})


BorrowerArg = Annotated[str, typer.Argument(help="The borrower.", metavar="BORROWER_ID")]
AgentArg = Annotated[str, typer.Argument(help="The collector.", metavar="AGENT_ID")]
NoteOpt = Annotated[
    str, typer.Option("--note", help="A note with the decision (kept encrypted, never in the audit log).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
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


def echo(lines: Iterable[str] | str) -> None:
    """Print rendered text: a string, or lines."""
    for line in [lines] if isinstance(lines, str) else lines:
        typer.echo(line)


def show(data: Any, as_json: bool, text: Callable[[], Iterable[str] | str], indent: int | None = 2) -> None:
    """Print ``data`` as JSON with --json, else the lines ``text()`` renders."""
    if as_json:
        typer.echo(json.dumps(data, indent=indent, ensure_ascii=False))
    else:
        echo(text())


def progress_line(line: str) -> None:
    """A progress or skip note, on stderr."""
    typer.echo(line, err=True)


# -- enroll ------------------------------------------------------------------------------------------


@app.command()
@uses(SCORE)
def enroll(
    settings: Settings,
    borrower_id: Annotated[str | None, typer.Argument(help="Borrower to enroll.", metavar="BORROWER_ID")] = None,
    audio: Annotated[
        list[Path] | None, typer.Argument(help="Recordings of the borrower's voice.", metavar="AUDIO")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="CSV with columns borrower_id,audio[,consent].")
    ] = None,
    consent: ConsentOpt = None,
    force: ForceOpt = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Forget earlier recordings of these borrowers first.")
    ] = False,
) -> None:
    """Build or extend borrowers' voiceprints from recordings of their voice (with their consent).

    A recording whose voice does not match the borrower's existing voiceprint, or that is already
    enrolled for someone else, is refused unless --force.
    """
    from .manifest import read_rows
    from .pipeline import enroll_recordings

    if manifest is None and (borrower_id is None or not audio):
        fail("give BORROWER_ID and one or more AUDIO files, or --manifest enroll.csv")
    if manifest is not None and (borrower_id or audio):
        fail("give either BORROWER_ID AUDIO... or --manifest, not both")
    items: list[tuple[str, str, str]]
    if manifest is not None:
        rows = read_rows(manifest, ("borrower_id", "audio"))
        items = [(f.get("borrower_id", ""), f.get("audio", ""), f.get("consent", "")) for _, f in rows]
    else:
        items = [(str(borrower_id), str(a), "") for a in audio or []]
    failures = enroll_recordings(items, settings, replace, typer.echo, consent=consent or "", force=force)
    if failures:
        typer.echo(f"voicecheck: {failures} recording(s) not enrolled; see above", err=True)
        raise typer.Exit(EXIT_USAGE)


# -- store -------------------------------------------------------------------------------------------


@store_app.command("list")
@uses(STORE)
def store_list(settings: Settings, as_json: JsonOpt = False) -> None:
    """List enrolled borrowers."""
    list_voiceprints("borrower", settings, as_json)


def list_voiceprints(kind: str, settings: Settings, as_json: bool) -> None:
    """Print the voiceprints of one kind (borrower or agent): counts and times, never vectors."""
    from .crypto import cipher_for
    from .enrollment import VoiceprintStore

    rows = VoiceprintStore(settings.store, cipher_for(settings)).summaries(kind)
    show(rows, as_json, lambda: render.voiceprint_lines(kind, rows, settings.store))


def remove_voiceprint(kind: str, owner_id: str, settings: Settings) -> None:
    """Delete one voiceprint of a kind; exit 3 when there is none."""
    from .erasure import remove_voiceprint as remove

    n = remove(settings, owner_id, kind)
    if n == 0:
        fail(f"{render.NOUN[kind]} {owner_id!r} has no voiceprint in {settings.store}", EXIT_INCONCLUSIVE)
    typer.echo(f"removed {'collector ' if kind == 'agent' else ''}{owner_id} ({n} recording(s))")
    if kind == "borrower":
        typer.echo(f"(their call embeddings are kept; 'voicecheck erase {owner_id}' removes everything)")


@store_app.command("show")
@uses(STORE)
def store_show(settings: Settings, borrower_id: BorrowerArg, as_json: JsonOpt = False) -> None:
    """Show one borrower's voiceprint: model, recordings, speech (never the vector)."""
    from .audit import audit_log
    from .crypto import cipher_for
    from .enrollment import VoiceprintStore

    db = VoiceprintStore(settings.store, cipher_for(settings))
    recs = db.recordings(borrower_id)
    audit_log(settings, db.cipher).record("store.show", borrower_id=borrower_id, recordings=len(recs))
    if not recs:
        fail(f"borrower {borrower_id!r} has no voiceprint in {settings.store}", EXIT_INCONCLUSIVE)
    summary = [s for s in db.summaries("borrower") if s["id"] == borrower_id]
    data = {"voiceprints": summary, "recordings": recs}
    show(data, as_json, lambda: render.voiceprint_detail(borrower_id, summary, recs))


@store_app.command("remove")
@uses(STORE)
def store_remove(settings: Settings, borrower_id: BorrowerArg) -> None:
    """Delete a borrower's voiceprint (their call embeddings stay: 'voicecheck erase' removes everything)."""
    remove_voiceprint("borrower", borrower_id, settings)


@store_app.command("migrate")
@uses(DATA)
def store_migrate(settings: Settings) -> None:
    """Upgrade older stores in place: encrypt their vectors with the key, add the consent columns."""
    from .protection import migrate_stores

    echo(migrate_stores(settings))


# -- data protection: key, erase, purge, audit ----------------------------------------------------


@key_app.command("init")
@uses(DATA)
def key_init(settings: Settings) -> None:
    """Create the encryption key (0600 file; default $XDG_CONFIG_HOME/voicecheck/key); never overwrites one."""
    from .protection import init_key

    path, kid = init_key(settings)
    typer.echo(f"key {kid} created in {path} (0600). Back it up somewhere safe: without it the stores cannot be read.")


@key_app.command("show")
@uses(DATA)
def key_show(settings: Settings) -> None:
    """Where the key comes from and its id (never the key itself)."""
    from .protection import describe_key

    echo(render.key_lines(describe_key(settings)))


@key_app.command("rotate")
@uses(DATA)
def key_rotate(
    settings: Settings,
    keep_old: Annotated[
        bool, typer.Option("--keep-old", help="Keep the old key in the key file (other folders still use it).")
    ] = False,
) -> None:
    """Re-encrypt the voiceprint and call stores and re-sign the audit log under a new key."""
    from .protection import rotate_key

    echo(render.rotation_line(rotate_key(settings, keep_old)))


@app.command()
@uses(DATA)
def erase(
    settings: Settings,
    borrower_id: Annotated[
        str, typer.Argument(help="Borrower whose voice data is to be erased.", metavar="BORROWER_ID")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Erase a borrower's voice data: voiceprint, calls and their embeddings, watchlist entries made from them."""
    from .erasure import erase as erase_borrower

    c = erase_borrower(settings, borrower_id)
    show({"borrower_id": borrower_id, **c}, as_json, lambda: render.erase_lines(borrower_id, c), indent=None)


@app.command()
@uses(DATA)
def purge(
    settings: Settings,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age past which call embeddings are removed, e.g. 90d (days).")
    ],
) -> None:
    """Remove call embeddings (and their call links) and QA reviews stored longer ago than --older-than."""
    from .erasure import purge as purge_calls

    days = parse_days(older_than)
    c = purge_calls(settings, days)
    reviews = f" and {c['reviews']} review(s)" if c.get("reviews") else ""
    typer.echo(
        f"purged {c['embeddings']} call embedding(s) and {c['calls']} call link(s){reviews} older than {days:g} days"
    )


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
@uses(STORE)
def audit_verify(settings: Settings) -> None:
    """Check the audit log's hash chain: exit 0 when intact, 1 naming the first bad line."""
    from .audit import audit_path, verify
    from .crypto import cipher_for

    path = audit_path(settings)
    result = verify(path, cipher_for(settings))
    if not result.ok:
        typer.echo(f"voicecheck: error: audit log {path}: line {result.bad_line} {result.problem}", err=True)
        raise typer.Exit(EXIT_MISMATCH)
    typer.echo(f"audit log {path}: {result.lines} line(s), chain intact; last hash {result.last_hash}")


@audit_app.command("show")
@uses(STORE)
def audit_show(
    settings: Settings,
    borrower: Annotated[str, typer.Option("--borrower", help="The borrower whose history to list.")],
    as_json: JsonOpt = False,
) -> None:
    """List every audited event that concerns one borrower (for a subject-access request)."""
    from .audit import audit_path, entries

    found = list(entries(audit_path(settings), borrower))
    show(found, as_json, lambda: render.audit_lines(found, borrower))


# -- check -------------------------------------------------------------------------------------------


@app.command()
@uses(SCORE)
def check(
    settings: Settings,
    audio: Annotated[
        Path,
        typer.Argument(help="Recorded call (WAV/FLAC/OGG/MP3; stereo: customer on --channel).", metavar="AUDIO"),
    ],
    borrower: Annotated[str, typer.Option("--borrower", help="Borrower the customer claims to be.")],
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Draw the similarity timeline to this PNG.")] = None,
    review: Annotated[
        str | None,
        typer.Option(
            "--review",
            metavar="genuine|impostor|unsure",
            help="Record your decision about this call at once (as voicecheck review does; audited).",
        ),
    ] = None,
    note: NoteOpt = "",
) -> None:
    """Check one call: is the customer's voice the borrower's? Exit 0 match, 1 mismatch, 3 inconclusive, 2 error.

    Prints where the evidence is (the stretch where the voice is least like the borrower's, the voice
    change, the --plot picture), so the call can be listened to there.
    """
    from .pipeline import check_one
    from .reviews import check_label, check_note

    if plot is not None:
        from .files import check_writable

        check_writable(plot)  # before any work: a bad --plot path must not cost the verdict
    if review is not None:
        review, note = check_label(review), check_note(note)
    result = check_one(audio, borrower, settings, timeline=True)
    unrecorded = record_check_review(settings, result, review, note) if review is not None else None
    record = result.to_dict()
    show(record, as_json, lambda: render.check_text(record, plot), indent=None)
    if result.verdict == "error":
        typer.echo(f"voicecheck: error: {result.reason}", err=True)
    if plot is not None and result.timeline:
        from .report import plot_timeline

        plot_timeline(record, plot)
        typer.echo(f"timeline drawn to {plot}", err=True)
    if unrecorded:
        fail(f"the review was not recorded: {unrecorded}")
    raise typer.Exit(EXIT_BY_VERDICT[result.verdict])


def record_check_review(settings: Settings, result: Any, label: str, note: str) -> str | None:
    """``check --review``: record the decision about the call just checked (its audio, its borrower).

    Returns:
        None when recorded (``result.review`` then carries it), else why not (the verdict is still
        printed; the command then exits 2).
    """
    from .reviews import in_record, record

    if result.verdict == "error" or not result.content_hash:
        return f"the call could not be checked ({result.reason})"
    try:
        done = record(
            settings,
            result.call_id,
            label,
            note,
            reason=result.reason or "",
            borrower_id=result.borrower_id,
            content_hash=result.content_hash,
            source="check",
        )
    except VoicecheckError as e:
        return str(e)
    result.review = in_record(done)
    typer.echo(f"review recorded: {done.call_id} {done.label} by {done.reviewer}", err=True)
    return None


# -- batch -------------------------------------------------------------------------------------------


@app.command()
@uses(SCORE, "workers")
def batch(
    settings: Settings,
    manifest: Annotated[
        Path, typer.Argument(help="CSV with call_id,borrower_id,audio[,customer_channel].", metavar="MANIFEST")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory (results.jsonl, summary.json).")],
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local (process pool) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address [default: start a local Ray on 127.0.0.1].")
    ] = None,
) -> None:
    """Check every call of a manifest; re-running with the same --out resumes where it stopped."""
    from tqdm import tqdm

    from .batch import run_batch, write_report

    if engine not in ("local", "ray"):
        fail(f"--engine must be local or ray, got {engine!r}")
    if address is not None and engine != "ray":
        fail("--address needs --engine ray")
    if settings.workers < 1:
        fail(f"--workers must be at least 1, got {settings.workers}")
    total = count_rows(manifest)
    with tqdm(total=total, unit="call", file=sys.stderr, disable=quiet, dynamic_ncols=True) as bar:
        summary = run_batch(manifest, out, settings, progress=bar.update, engine=engine, address=address)
    report = write_report(out, settings, summary)
    print_summary(summary, out)
    typer.echo(f"report: {report}")


def count_rows(manifest: Path) -> int:
    """Rows of a call manifest (checks its header first, so a bad manifest fails before any model loads)."""
    from .manifest import CALL_COLUMNS, read_rows

    return sum(1 for _ in read_rows(manifest, CALL_COLUMNS))


def print_summary(summary: dict[str, Any], out: Path) -> None:
    """One line of counts, then the flagged calls (mismatches first)."""
    from .report import RESULTS, read_jsonl

    echo(render.summary_lines(summary, out, read_jsonl(out / RESULTS)))


@app.command()
@uses(MODEL, "threshold", "backend_file")
def rescore(
    settings: Settings,
    out: Annotated[Path, typer.Option("--out", help="Output directory for the new results.jsonl and summary.json.")],
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Calls to rescore [default: every stored call].")
    ] = None,
) -> None:
    """Re-apply thresholds, calibration, a new cohort or back-end to stored call embeddings (no audio decoded)."""
    from .batch import rescore as rescore_calls

    print_summary(rescore_calls(out, settings, manifest), out)


# -- accuracy ----------------------------------------------------------------------------------------

TrialsArg = Annotated[
    Path | None,
    typer.Argument(
        help="CSV: enroll_audio,test_audio,label or borrower_id,audio|call_id,label (or --reviewed).",
        metavar="[TRIALS]",
    ),
]
ReviewedOpt = Annotated[
    bool,
    typer.Option("--reviewed", help="Use the calls QA agents reviewed genuine or impostor instead of a trials file."),
]


def trials_source(trials: Path | None, reviewed: bool) -> Path | None:
    """The trials file, or None for the reviewed calls; exactly one of them must be given."""
    if (trials is None) == (not reviewed):
        fail("give a TRIALS file or --reviewed (the calls QA agents reviewed), not both and not neither")
    return trials


@app.command("eval")
@uses(EMBED, "backend_file")
def eval_trials(
    settings: Settings,
    out: Annotated[Path, typer.Option("--out", help="Directory for metrics.json, scores.csv and det.png.")],
    trials: TrialsArg = None,
    reviewed: ReviewedOpt = False,
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

    m = evaluate(trials_source(trials, reviewed), out, settings, progress_line, compare_backend)
    show(m, as_json, lambda: render.eval_lines(m, out))


@app.command()
@uses(EMBED, "backend_file")
def calibrate(
    settings: Settings,
    trials: TrialsArg = None,
    reviewed: ReviewedOpt = False,
    max_false_flag: Annotated[
        float, typer.Option("--max-false-flag", help="Fraction of genuine calls the threshold may flag.")
    ] = 0.05,
    at_llr: Annotated[
        float | None,
        typer.Option("--at-llr", help="Put the threshold where the calibrated LLR equals this (instead of a rate)."),
    ] = None,
) -> None:
    """Fit score -> log-likelihood ratio and the threshold on labelled trials; results then carry llr.

    A calibration of a back-end mode holds for the back-end it was made with only.
    """
    from .evaluate import calibrate as fit

    if not 0 <= max_false_flag < 1:
        fail(f"--max-false-flag must be in [0, 1), got {max_false_flag}")
    c = fit(trials_source(trials, reviewed), settings, max_false_flag, progress_line, at_llr)
    echo(render.calibration_lines(c, max_false_flag, at_llr, settings.takeover_min_segment_s))


# -- back-ends ---------------------------------------------------------------------------------------


@backend_app.command("train")
@uses(MODEL)
def backend_train(settings: Settings) -> None:
    """Train a back-end on this deployment's own calls: those the check accepts with a wide margin (and
    QA-reviewed genuine ones), labelled by borrower, adapted from the shipped back-end's statistics.

    Writes <embeddings>/backends/<model>-in-domain-<time>.npz; backend_file = "adapted" selects the newest.
    Refused while fewer than adapt_min_borrowers borrowers have two such calls, or one and their voiceprint.
    """
    from .adapt import train_backend

    echo(render.trained_lines(train_backend(settings, report=progress_line)))


@backend_app.command("list")
@uses("embeddings", "model")
def backend_list(settings: Settings, as_json: JsonOpt = False) -> None:
    """The in-domain back-ends of the model in the workspace (oldest first) and the one the settings select."""
    from .adapt import describe_backends

    rows, active = describe_backends(settings)
    show(
        {"backends": rows, "active": active}, as_json, lambda: render.backend_lines(rows, active, settings.backend_file)
    )


# -- across calls ------------------------------------------------------------------------------------


@cohort_app.command("build")
@uses("embeddings", "model", "device", "channel", "workers")
def cohort_build(
    settings: Settings,
    manifest: Annotated[
        Path,
        typer.Argument(
            help="CSV with an audio column (customer_channel optional): unlabelled calls.", metavar="MANIFEST"
        ),
    ],
) -> None:
    """Embed unlabelled in-domain calls into the call-embedding store, for centring and AS-norm."""
    from .batch import build_cohort

    added, failed, total = build_cohort(manifest, settings, progress_line)
    typer.echo(
        f"cohort: {added} call(s) embedded, {failed} skipped; {total} {settings.model} call embeddings "
        f"stored in {settings.embeddings}"
    )


@app.command()
@uses("embeddings", "model")
def consistency(settings: Settings, as_json: JsonOpt = False) -> None:
    """Borrowers whose stored calls hold two or more distinct voices, with the calls per voice."""
    from .crosscall import inconsistent_borrowers

    found = inconsistent_borrowers(settings)
    show(found, as_json, lambda: render.consistency_lines(found))


@app.command("rings")
@uses(MODEL)
def rings_cmd(
    settings: Settings,
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
    found = rings(settings, min_borrowers, include_verified=include_verified)
    show(found, as_json, lambda: render.rings_lines(found, min_borrowers))


# -- watchlist ---------------------------------------------------------------------------------------


@watch_app.command("add")
@uses(MODEL, "channel")
def watch_add(
    settings: Settings,
    label: Annotated[str, typer.Argument(help="Name for this voice, e.g. AGENT-0042.", metavar="LABEL")],
    audio: Annotated[list[Path] | None, typer.Argument(help="Recordings of the voice.", metavar="AUDIO")] = None,
    call: Annotated[list[str] | None, typer.Option("--call", help="A call id already in the call store.")] = None,
    source: Annotated[str, typer.Option("--source", help="Where the voice comes from (case, institution).")] = "local",
) -> None:
    """Add a known proxy-agent voice from recordings or from stored calls."""
    from .pipeline import watch_from

    if not audio and not call:
        fail("give one or more AUDIO files or --call CALL_ID")
    n = watch_from(label, [str(a) for a in audio or []], list(call or []), source, settings)
    typer.echo(f"watchlist: {label} added from {n} recording(s)/call(s)")


def watch_store(settings: Settings) -> tuple[Any, Any]:
    """The voiceprint store holding the watchlist, and the model spec whose entries to use."""
    from .crypto import cipher_for
    from .embedders import model_spec
    from .enrollment import VoiceprintStore

    spec = model_spec(settings.model, settings.embeddings)
    return VoiceprintStore(settings.store, cipher_for(settings)), spec


@watch_app.command("list")
@uses(MODEL)
def watch_list(settings: Settings, as_json: JsonOpt = False) -> None:
    """List watchlist voices (label, source, date, model)."""
    db, spec = watch_store(settings)
    rows = [
        {"label": e.label, "source": e.source, "added_on": e.added_on, "model": e.model}
        for e in db.watch_list(spec.name)
    ]
    show(rows, as_json, lambda: render.watchlist_lines(rows, spec.name))


@watch_app.command("remove")
@uses(STORE)
def watch_remove(
    settings: Settings, label: Annotated[str, typer.Argument(help="The voice's label.", metavar="LABEL")]
) -> None:
    """Remove a voice from the watchlist."""
    from .erasure import remove_watch_entry

    if remove_watch_entry(settings, label) == 0:
        fail(f"no watchlist entry labelled {label!r}", EXIT_INCONCLUSIVE)
    typer.echo(f"watchlist: removed {label}")


@watch_app.command("export")
@uses(MODEL)
def watch_export(
    settings: Settings, file: Annotated[Path, typer.Argument(help="File to write.", metavar="FILE")]
) -> None:
    """Write the watchlist as a shareable file of embeddings (model name, no audio)."""
    from .enrollment import export_watchlist

    db, spec = watch_store(settings)
    n = export_watchlist(db, file, spec.name)
    typer.echo(f"watchlist: exported {n} {spec.name} voice(s) to {file}")


@watch_app.command("import")
@uses(MODEL)
def watch_import(
    settings: Settings,
    file: Annotated[Path, typer.Argument(help="A watchlist file from watchlist export.", metavar="FILE")],
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite entries whose label exists.")] = False,
) -> None:
    """Merge a watchlist file shared by another team or institution."""
    from .enrollment import import_watchlist

    db, spec = watch_store(settings)
    added, skipped = import_watchlist(db, file, spec.name, spec.dimension, replace)
    typer.echo(f"watchlist: imported {added} voice(s), {skipped} skipped (label exists; --replace to overwrite)")


# -- collectors --------------------------------------------------------------------------------------


@agents_app.command("enroll")
@uses(MODEL, "channel", "threshold")
def agents_enroll(
    settings: Settings,
    agent_id: AgentArg,
    audio: Annotated[list[Path], typer.Argument(help="Recordings of the collector's voice.", metavar="AUDIO")],
    consent: ConsentOpt = None,
    force: ForceOpt = False,
    replace: Annotated[bool, typer.Option("--replace", help="Start this collector's voiceprint over.")] = False,
) -> None:
    """Enroll a collector's voice (with their consent), so it can be removed from mono recordings."""
    from .pipeline import enroll_recordings

    items = [(agent_id, str(a)) for a in audio]
    if enroll_recordings(items, settings, replace, typer.echo, "agent", consent or "", force):
        raise typer.Exit(EXIT_USAGE)


@agents_app.command("list")
@uses(STORE)
def agents_list(settings: Settings, as_json: JsonOpt = False) -> None:
    """List enrolled collectors."""
    list_voiceprints("agent", settings, as_json)


@agents_app.command("remove")
@uses(STORE)
def agents_remove(settings: Settings, agent_id: AgentArg) -> None:
    """Delete a collector's voiceprint."""
    remove_voiceprint("agent", agent_id, settings)


# -- QA review ---------------------------------------------------------------------------------------

LabelOpt = Annotated[
    str, typer.Option("--label", metavar="genuine|impostor|unsure", help="Your decision: who spoke as the borrower.")
]
FileArg = Annotated[Path, typer.Argument(help="A review CSV.", metavar="FILE")]


@review_app.command("call")
@uses(DATA)
def review_call(
    settings: Settings,
    call_id: Annotated[str, typer.Argument(help="The call reviewed.", metavar="CALL_ID")],
    label: LabelOpt,
    note: NoteOpt = "",
) -> None:
    """Record a decision about one call (short form: voicecheck review CALL_ID --label ...)."""
    from .reviews import record

    done = record(settings, call_id, label, note)
    typer.echo(f"review recorded: {done.call_id} (borrower {done.borrower_id}) {done.label} by {done.reviewer}")


@review_app.command("list")
@uses(DATA)
def review_list(
    settings: Settings,
    results: Annotated[
        Path | None,
        typer.Option("--results", help="A batch's --out folder: list its mismatches, each with its review if any."),
    ] = None,
    unreviewed: Annotated[bool, typer.Option("--unreviewed", help="Only flagged calls without a review.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Only calls flagged for this reason, e.g. speaker_change.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List recorded decisions, or (--results) a run's flagged calls with their decisions."""
    from .reviews import listing

    rows = listing(settings, results, unreviewed, reason)
    show(rows, as_json, lambda: render.review_lines(rows, results is not None))


@review_app.command("export")
@uses(DATA)
def review_export(settings: Settings, file: FileArg) -> None:
    """Write every recorded decision to a CSV file (0600; cells a spreadsheet would run are escaped)."""
    from .reviews import export_csv

    typer.echo(f"review: exported {export_csv(settings, file)} decision(s) to {file}")


@review_app.command("import")
@uses(DATA)
def review_import(settings: Settings, file: FileArg) -> None:
    """Record the decisions in a CSV (from review export or the report page); nothing if any row is bad."""
    from .reviews import import_csv

    typer.echo(f"review: recorded {import_csv(settings, file)} decision(s) from {file}")


def main() -> None:
    import os

    level = logging.DEBUG if os.environ.get("VOICECHECK_DEBUG") else logging.WARNING
    logging.basicConfig(level=level, format="voicecheck: %(levelname)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
