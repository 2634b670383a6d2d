"""Live traffic commands: serve, rollout start|status|stop, ab report, watch."""

from __future__ import annotations

import json
from typing import Any

import click

from retrain.cli.options import FROM_SETTINGS, emit, json_option, project_run, settings_options, unless_default


def _stages(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of percentages, e.g. 5,25,50,100", param_hint="--stages"
        ) from None


def _log_to_stderr() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command()
@settings_options
@click.option("--host", default="", help="Address to listen on (default: serving.host).")
@click.option("--port", default="", help="Port (default: serving.port).")
def serve(settings, host: str, port: str) -> None:
    """Serve production (and an active rollout's candidate) over HTTP until SIGTERM.

    Endpoints: POST /predict, POST /feedback, GET /health, GET /status, POST /webhook/mlflow.
    """
    from retrain.serving.app import serve as run_service

    host, port = unless_default(host, FROM_SETTINGS) or "", unless_default(port, FROM_SETTINGS) or ""
    if port and not (port.isdigit() and 1 <= int(port) <= 65_535):
        raise click.BadParameter(f"{port!r} is not a port number (1..65535)", param_hint="--port")
    _log_to_stderr()
    with project_run(
        settings.experiments.monitoring,
        f"serve {settings.registry.model_name}",
        {"retrain.model_name": settings.registry.model_name},
    ):
        run_service(settings, host or None, int(port) if port else None)


@click.group()
def rollout() -> None:
    """Send live traffic to a candidate: A/B, canary or shadow, kept in the registry."""


@rollout.command("start")
@settings_options
@click.option("--mode", required=True, metavar="ab|canary|shadow", help="How the candidate gets traffic.")
@click.option(
    "--share", type=float, default=None, help="ab: percent of entities sent to the candidate (default: rollout.share)."
)
@click.option("--candidate", default="", help="Version to roll out (default: the staging alias).")
@click.option("--stages", default="", help="canary: percentages, e.g. 5,25,50,100 (default: rollout.stages).")
@click.option("--min-requests", type=click.IntRange(min=1), default=None, help="canary: candidate records per stage.")
@click.option(
    "--max-error-rate", type=click.FloatRange(0, 1), default=None, help="canary: breach above this error rate."
)
@click.option(
    "--max-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None, help="canary: breach above this p99."
)
@click.option(
    "--once", is_flag=True, help="canary: start (or resume) and take one controller step, then exit (for cron)."
)
@click.option(
    "--interval-s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="canary: seconds between controller steps (default: rollout.interval_s).",
)
@click.option("--reason", default="", help="Why; recorded with the rollout.")
@click.option(
    "--force",
    is_flag=True,
    help="Roll out a version that was rolled back (by `retrain watch` or by hand); needs --reason.",
)
@json_option
def rollout_start(
    settings,
    mode: str,
    share: float | None,
    candidate: str,
    stages: str,
    min_requests: int | None,
    max_error_rate: float | None,
    max_p99_ms: float | None,
    once: bool,
    interval_s: float | None,
    reason: str,
    force: bool,
    as_json: bool,
) -> None:
    """Start an A/B, canary or shadow rollout of the candidate against production
    (a canary also runs its controller)."""
    from retrain.serving import control

    record, resumed = control.start(
        settings,
        mode,
        share=share,
        candidate=candidate or None,
        stages=_stages(stages),
        reason=reason or None,
        force=force,
        min_requests=min_requests,
        max_error_rate=max_error_rate,
        max_p99_ms=max_p99_ms,
    )
    out: dict[str, Any] = {"rollout": record.to_dict(), "resumed": resumed}
    lines = [("resumed " if resumed else "started ") + control.describe(record)]
    if mode == "canary":
        if once:
            step = control.canary_step_once(settings)
        else:
            if not as_json:
                _log_to_stderr()
            step = control.run_canary(settings, interval_s=interval_s)
        out["step"] = step.to_dict()
        lines.append(f"canary {step.action}: {step.reason}")
    emit(out, as_json, lines)


@rollout.command("status")
@settings_options
@json_option
def rollout_status(settings, as_json: bool) -> None:
    """The latest rollout record, the route the service takes now, and per-variant numbers from the log."""
    from retrain.serving import control
    from retrain.serving.rollout import Rollout

    info = control.status(settings)
    record = Rollout.from_json(json.dumps(info["rollout"])) if info["rollout"] else None
    lines = [
        f"{info['model_name']}: production version {info['production']}; route {info['route']['mode']}"
        + (
            f" (candidate {info['route']['candidate']}, {info['route']['share']:g}%)"
            if info["route"]["candidate"]
            else ""
        )
        + (f"; {info['route']['note']}" if info["route"]["note"] else ""),
        "latest rollout: " + control.describe(record),
    ]
    if info.get("stats_note"):
        lines.append(f"  no live numbers: {info['stats_note']}")
    for variant, st in (info["stats"] or {}).items():
        p99 = f"{st['p99_ms']:.1f} ms" if st["p99_ms"] is not None else "-"
        metric = f"{st['metric']:.4f}" if st["metric"] is not None else "-"
        lines.append(
            f"  {variant:<10} records {st['records']:>7}  errors {st['errors']:>5}  p99 {p99:>9}  "
            f"labelled {st['labelled']:>6}  live metric {metric}"
        )
    emit(info, as_json, lines)


@rollout.command("stop")
@settings_options
@click.option("--reason", default="", help="Why; recorded with the rollout.")
@json_option
def rollout_stop(settings, reason: str, as_json: bool) -> None:
    """End the active rollout: production answers all traffic again."""
    from retrain.serving import control

    record = control.stop(settings, reason=reason or None)
    emit({"rollout": record.to_dict()}, as_json, ["stopped: " + control.describe(record)])


@click.group()
def ab() -> None:
    """Analyse live A/B traffic."""


def _utc(value: str, option: str):
    """An ISO time from the command line as the naive UTC the log keeps (no offset: UTC)."""
    from datetime import UTC, datetime

    from retrain.serving.rollout import RolloutError

    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise RolloutError(f"{option} {value!r} is not an ISO time; use e.g. 2026-12-03T09:00 (UTC)") from None
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


@ab.command("report")
@settings_options
@click.option(
    "--rollout",
    "rollout_seq",
    type=click.IntRange(min=1),
    default=None,
    help="Rollout holding record N (default: the latest).",
)
@click.option("--since", default="", help="Start of the window, ISO time in UTC (default: the rollout's start).")
@click.option("--until", default="", help="End of the window, ISO time in UTC (default: the rollout's end, or now).")
@json_option
def ab_report(settings, rollout_seq: int | None, since: str, until: str, as_json: bool) -> None:
    """One rollout's report over its own span, a PNG and a run: A/B or canary (per-variant metrics, differences
    at the customer with CIs, sample-ratio check per stage, sample size), or shadow (agreement, metric deltas,
    latency)."""
    from retrain.serving import report

    result = report.report(settings, rollout=rollout_seq, since=_utc(since, "--since"), until=_utc(until, "--until"))
    emit(result, as_json, report.lines(result))


@click.command()
@settings_options
@click.option("--once", is_flag=True, help="Look once and exit (for cron); without it, look every watch.interval_s.")
@json_option
def watch(settings, once: bool, as_json: bool) -> None:
    """After a promotion: roll back automatically if the new production's live accuracy regressed significantly."""
    from retrain.serving.watch import watch as run_watch

    def show(result) -> None:
        if not as_json and not once:
            click.echo(f"{result.state}: {result.reason}", err=True)

    result = run_watch(settings, once=once, on_look=show)
    lines = [f"{result.state}: {result.reason}"]
    if result.rollback:
        lines.append(
            f"rolled back {result.model_name} production {result.rollback['from_version']} -> "
            f"{result.rollback['to_version']} (move #{result.rollback['seq']})"
        )
    emit(result.to_dict(), as_json, lines)
