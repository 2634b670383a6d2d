"""Markdown for the MLflow UI: run descriptions (comparison, cycle), the registered model's production history,
each version's story. Pure: values in, text out; `tracking`/`registry` write it (tag `mlflow.note.content`,
model and version descriptions). Links are the UI's own routes (`#/experiments/...`, `#/models/...`), so they
work on whatever host serves the UI, each with `UI_QUERY`: MLflow 3.x's UI opens experiments in its GenAI mode
(traces, no registry in the sidebar) unless the address says `workflowType=machine_learning`; no experiment tag
or server setting changes that default (the UI reads only the address and the browser's own stored choice).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from retrain.floors import p_text
from retrain.version_tags import expand

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "expected_cost"})
HISTORY_ROWS = 50  # moves shown in the model description; `retrain history` pages through all of them
DESCRIPTION_LIMIT = 5000  # MLflow's column for model and version descriptions (PostgreSQL enforces it)
NOTE_LIMIT = 8000  # a run's description is a tag: MLflow's tag value limit
UI_QUERY = "?workflowType=machine_learning"  # the UI's runs table and model registry, not its GenAI pages


CUT_NOTE = "\n\n(cut to fit MLflow's limit)"


def fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters at a line end, saying so."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 40].rsplit("\n", 1)[0]
    return cut + CUT_NOTE


def num(value: Any) -> str:
    """4 significant digits; `-` for a missing value."""
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:
        return "nan"
    return f"{v:.4g}"


def signed(value: Any) -> str:
    text = num(value)
    return text if text in ("-", "nan") or text.startswith("-") else "+" + text


def cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def run_route(experiment_id: str | None, run_id: str) -> str:
    """The UI's route to a run (`#/...`, with `UI_QUERY`). Without the experiment, the UI's direct route
    (`#/runs/<id>`) finds it and redirects."""
    path = f"#/experiments/{experiment_id}/runs/{run_id}" if experiment_id else f"#/runs/{run_id}"
    return path + UI_QUERY


def model_route(model: str, version: str | None = None) -> str:
    return f"#/models/{model}" + (f"/versions/{version}" if version else "") + UI_QUERY


def experiment_route(experiment_id: str) -> str:
    return f"#/experiments/{experiment_id}/runs" + UI_QUERY


def run_link(experiment_id: str | None, run_id: str | None, label: str | None = None) -> str:
    if not run_id:
        return "-"
    return f"[{label or f'run {run_id[:8]}'}]({run_route(experiment_id, run_id)})"


def version_link(model: str, version: str | None) -> str:
    if not version:
        return "(none)"
    return f"[v{version}]({model_route(model, version)})"


def guardrail_text(
    metric: str,
    delta: float | None,
    primary: str,
    min_improvement: float,
    guardrails: Mapping[str, float],
    matched: Mapping[str, float] | None = None,
) -> str:
    """What the gate asks of this metric's delta, and whether the delta meets it. A threshold metric with
    `matched` numbers (comparison.json `matched`) is judged at matched operating points, not by `delta`."""
    lower = metric in LOWER_IS_BETTER
    if metric != primary and metric in guardrails and matched:
        diff = matched["candidate"] - matched["incumbent"]
        allowed = guardrails[metric]
        holds = (diff if lower else -diff) <= allowed + 1e-12
        return f"{'rise' if lower else 'drop'} <= {allowed:g} at matched operating points: {signed(diff)}" + (
            " ✓" if holds else " ✗"
        )
    if metric == primary:
        rule, ok = (
            f"primary: {'fall' if lower else 'rise'} >= {min_improvement:g}",
            None if delta is None else (-delta if lower else delta) >= min_improvement - 1e-12,
        )
    elif metric in guardrails:
        allowed = guardrails[metric]
        rule, ok = (
            f"{'rise' if lower else 'drop'} <= {allowed:g}",
            None if delta is None else (delta if lower else -delta) <= allowed + 1e-12,
        )
    else:
        return ""
    return rule + ("" if ok is None else " ✓" if ok else " ✗")


BOUND_MODES = ("non_inferiority", "unless_shown_worse")


def _floor_mark(f: Mapping[str, Any]) -> str:
    """A first model's floor in the table: `floor >= 0.5 ✓` (a ceiling for lower-is-better metrics)."""
    lower = f.get("metric") in LOWER_IS_BETTER
    return f"floor {'<=' if lower else '>='} {num(f.get('bound'))} {'✓' if f.get('passed') else '✗'}"


def _primary_rule(d: Mapping[str, Any], margin: float) -> str:
    """The primary metric's rule in the gate modes that judge confidence bounds of the improvement."""
    if d["mode"] == "non_inferiority":
        bound, rule = d.get("lower_bound"), f"primary: lower bound > -{margin:g}"
        ok = None if bound is None else bound > -margin
    else:
        bound, rule = d.get("upper_bound"), f"primary: not shown worse (upper bound >= -{margin:g})"
        ok = None if bound is None else bound >= -margin
    return rule + ("" if ok is None else f" ({signed(bound)}) " + ("✓" if ok else "✗"))


def comparison_markdown(
    c: Mapping[str, Any],
    *,
    primary: str,
    min_improvement: float,
    guardrails: Mapping[str, float],
    links: Mapping[str, str],
    figure: bool = True,
    margin: float = 0.005,
) -> str:
    """The comparison run's description. `c` is `Comparison.to_dict()`; `links` holds the markdown links
    `candidate`, `production` (versions) and `candidate_run`, `production_run` (their training runs);
    `figure`: whether the run has `comparison.png` (a backtest's replayed comparisons have none); `margin`:
    gate.margin, for the rule of the non_inferiority and unless_shown_worse modes."""
    d = c["decision"]
    inc = c.get("incumbent_metrics") or {}
    cand = c["candidate_metrics"]
    head = f"v{c['candidate_version']} vs " + (
        f"v{c['incumbent_version']}" if c.get("incumbent_version") else "no production"
    )
    lines = [
        f"## {d['decision'].upper()}: {c['model_name']} {head} (as of {c['as_of']})",
        "",
        f"**Reason:** {d['reason']}",
        "",
    ]
    for reason in d.get("reasons", []):
        if reason != d["reason"]:
            lines.append(f"- {reason}")
    lines += [
        "",
        f"Fresh held-out rows: {c['n_rows']:,} from {c['window_start']}..{c['window_end']}"
        + (" — **backtest** (production learned from these rows; never promotes)" if c.get("backtest") else ""),
        "",
        f"| metric | candidate v{c['candidate_version']} | production "
        f"{'v' + c['incumbent_version'] if c.get('incumbent_version') else '(none)'} | delta | guardrail |",
        "|---|---:|---:|---:|---|",
    ]
    threshold_row = (c.get("candidate_threshold"), c.get("incumbent_threshold"))
    lines.append(f"| decision threshold | {num(threshold_row[0])} | {num(threshold_row[1])} | | |")
    order = [
        primary,
        *[m for m in guardrails if m != primary],
        *[m for m in cand if m != primary and m not in guardrails],
    ]
    matched = c.get("matched") or {}
    floors_of: dict[str, list[Mapping[str, Any]]] = {}
    for f in d.get("floors", []):
        floors_of.setdefault(f.get("metric", ""), []).append(f)
    for metric in dict.fromkeys(m for m in order if m in cand):
        delta = (c.get("deltas") or {}).get(metric)
        if metric == primary and d.get("mode") in BOUND_MODES:
            rule = _primary_rule(d, margin)
        elif d.get("mode") == "floors" or not c.get("incumbent_version"):
            rule = "; ".join(_floor_mark(f) for f in floors_of.get(metric, []))
        else:
            rule = guardrail_text(metric, delta, primary, min_improvement, guardrails, matched.get(metric))
        lines.append(
            f"| {'**' + metric + '**' if metric == primary else metric} | {num(cand[metric])} | "
            f"{num(inc.get(metric))} | {signed(delta)} | {rule} |"
        )
    if d.get("floors"):
        lines += ["", "**First model's floors** (no production to compare with):", ""]
        lines += [f"- {'✓' if f.get('passed') else '✗'} {f.get('detail', '')}" for f in d["floors"]]
    delong = c.get("delong") or {}
    if delong:
        lines += [
            "",
            f"**DeLong (ROC AUC):** difference {signed(delong.get('delta'))}, 95% CI "
            f"[{num(delong.get('ci_low'))}, {num(delong.get('ci_high'))}], one-sided "
            + (p_text(p) if isinstance(p := delong.get("p_value_one_sided"), (int, float)) else "p -"),
        ]
    failed = [ch for ch in c.get("checks", []) if not ch.get("passed")]
    lines += [
        "",
        f"**Pre-promotion checks:** {len(c.get('checks', [])) - len(failed)} of {len(c.get('checks', []))} "
        "passed" + "".join(f"; {ch['name']} failed: {ch.get('detail', '')}" for ch in failed),
    ]
    lines += ["", f"Candidate: {links.get('candidate', '-')} (trained in {links.get('candidate_run', '-')})"]
    if c.get("incumbent_version"):
        lines.append(f"Production: {links.get('production', '-')} (trained in {links.get('production_run', '-')})")
    lines += [
        "",
        "Figure: `comparison.png`; every number: `comparison.json`."
        if figure
        else "Every number: `comparison.json` (no figure: a backtest's replayed comparison).",
    ]
    return fit("\n".join(lines), NOTE_LIMIT)


def cycle_markdown(result: Mapping[str, Any], model: str, links: Mapping[str, str]) -> str:
    """The cycle run's description: the outcome, why, and links to its check, training and comparison runs."""
    lines = [f"## {result['outcome'].upper()}: {model} cycle as of {result['as_of']}", ""]
    lines += [f"- {r}" for r in result.get("reasons", [])]
    before, after = result.get("production_before"), result.get("production_after")
    lines += [
        "",
        f"Production: {version_link(model, before)} -> {version_link(model, after)}"
        if before != after
        else f"Production: {version_link(model, after)} (unchanged)",
    ]
    if result.get("candidate_version"):
        lines.append(f"Candidate: {version_link(model, result['candidate_version'])}")
    decision = result.get("decision") or {}
    if decision.get("candidate_value") is not None:
        metric = decision.get("primary_metric", "")
        lines.append(
            f"{metric}: candidate {num(decision['candidate_value'])}, production {num(decision.get('incumbent_value'))}"
        )
    lines += ["", "| step | run |", "|---|---|"]
    for step in ("check", "train", "evaluate"):
        lines.append(f"| {step} | {links.get(step, 'not run')} |")
    return fit("\n".join(lines), NOTE_LIMIT)


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


REASON_CHARS = 160  # a history row's reason; the full text is in the run its link opens


def move_search(experiment_id: str, model: str, seq: int) -> str:
    """The UI's runs table of `experiment_id` filtered to the run that made move `seq` of `model` (tagged
    `retrain.move_seq`): a link written before the run is known, with no read."""
    from urllib.parse import quote

    query = f"tags.retrain.model_name = '{model}' and tags.retrain.move_seq = '{seq}'"
    return f"#/experiments/{experiment_id}/runs?searchFilter={quote(query)}&" + UI_QUERY[1:]


def move_row(model: str, m: Any, comparison_link: str = "-") -> str:
    """One row of the production history table for `retrain.registry.rules.Move` `m`; the reason shortened
    at a word (the full text is one click away, in the run `comparison_link` opens)."""
    kind = m.kind + (" (aborted)" if m.aborted else "")
    return (
        f"| {m.seq} | {m.at[:19].replace('T', ' ')} | {kind} | {version_link(model, m.from_version)} -> "
        f"{version_link(model, m.to_version)} | {cell(m.actor)[:60]} | {shorten(cell(m.reason), REASON_CHARS)} "
        f"| {comparison_link} |"
    )


def history_rows(description: str | None) -> list[str]:
    """The move rows of a description `history_markdown` wrote (newest first)."""
    return [line for line in (description or "").splitlines() if line.startswith("| ") and line[2:3].isdigit()]


def _row_seq(row: str) -> int:
    return int(row.split("|")[1].strip())


def history_markdown(model: str, production: str | None, rows: Iterable[str], header: str = "") -> str:
    """The registered model's description: what serves, and the production history newest first, as many
    rows of `rows` (from `move_row`, newest first) as fit MLflow's limit, then where to find older ones."""
    lines = [header, ""] if header else []
    lines += [
        f"**Production now:** {version_link(model, production)}",
        "",
        "### Production history (newest first)",
        "",
        "| # | when (UTC) | kind | from -> to | who | reason | run |",
        "|---:|---|---|---|---|---|---|",
    ]
    footer = ["", "The record is the move log (`retrain history`); this table is redrawn after every move."]
    budget = DESCRIPTION_LIMIT - len("\n".join(lines + footer)) - 120
    shown: list[str] = []
    for row in rows:
        if len(shown) >= HISTORY_ROWS or len(row) + 1 > budget:
            lines += shown + [f"| | | | | | older moves: `retrain history --before {_row_seq(shown[-1])}` | |"]
            break
        budget -= len(row) + 1
        shown.append(row)
    else:
        lines += shown or ["| | | | | | no moves yet | |"]
    return fit("\n".join(lines + footer), DESCRIPTION_LIMIT)


def history_after_move(model: str, production: str | None, row: str, previous: str | None, header: str = "") -> str:
    """The description after one more move: its row on top of the rows already shown (a rendering kept up to
    date with a constant number of calls, whatever the history's length; `retrain status --repair` redraws
    it from the move log)."""
    seq = _row_seq(row)
    older = [r for r in history_rows(previous) if _row_seq(r) < seq]
    return history_markdown(model, production, [row, *older], header)


DETAILS_HEAD = "**Training details** (tags of the training run, kept off the version to keep its tag list short):"


def details_markdown(tags: Mapping[str, str]) -> str | None:
    """The training run's tags no code reads on a version (`training.DETAIL_TAGS`), as a list for the version's
    description; each value cut to 300 characters (the run keeps the full text). None without any."""
    items = [(k, v if len(v) <= 300 else v[:297].rsplit(" ", 1)[0] + "...") for k, v in sorted(tags.items()) if v]
    if not items:
        return None
    return "\n".join([DETAILS_HEAD, "", *(f"- `{k.removeprefix('retrain.')}`: {v}" for k, v in items)])


def details_of(description: str | None) -> str | None:
    """The training-details block of a description `version_markdown` wrote (carried over when it is redrawn)."""
    at = (description or "").find(DETAILS_HEAD)
    if at < 0:
        return None
    return (description or "")[at:].removesuffix(CUT_NOTE).rstrip()


def version_markdown(
    model: str,
    version: str,
    tags: Mapping[str, str],
    aliases: Iterable[str],
    *,
    production_alias: str,
    staging_alias: str,
    comparison: str | None = None,
    details: str | None = None,
) -> str:
    """A version's description: what it was trained on, its validation metrics, its fate, and last the
    training details (`details_markdown`) that are not tags of the version."""
    aliases, tags = set(aliases), expand(tags)
    try:
        metrics = json.loads(tags.get("retrain.metrics", "{}"))
    except ValueError:
        metrics = {}
    if not isinstance(metrics, dict):  # a hand-edited tag may hold anything
        metrics = {}
    kind = fate_kind(tags, aliases, production_alias=production_alias, staging_alias=staging_alias)
    lines = [summary_line(kind, tags.get("retrain.as_of"), metrics), ""]
    lines += [f"## {model} v{version}", ""]
    if tags.get("retrain.as_of"):
        lines.append(
            f"**Trained on:** {tags.get('retrain.train_rows', '?')} rows from "
            f"{tags.get('retrain.train_start', '?')}..{tags.get('retrain.train_end', '?')}, as of "
            f"{tags['retrain.as_of']}; validated on {tags.get('retrain.validation_rows', '?')} rows "
            f"{tags.get('retrain.validation_start', '?')}..{tags.get('retrain.validation_end', '?')}"
        )
    if tags.get("retrain.window_since"):
        lines.append(
            f"**Short window:** only rows since {tags['retrain.window_since']} (windows.since: the problem "
            "changed then; the usual windows would have been mostly the old regime)"
        )
    if tags.get("retrain.trigger"):
        lines.append(f"**Why trained:** {tags['retrain.trigger']}")
    if tags.get("retrain.threshold"):
        lines.append(
            f"**Decision threshold:** {num(tags['retrain.threshold'])} ({tags.get('retrain.threshold_policy', '?')})"
        )
    if metrics:
        lines += ["", "| validation metric | value |", "|---|---:|"]
        lines += [f"| {k} | {num(v)} |" for k, v in sorted(metrics.items())]
    if tags.get("retrain.rollout"):
        lines += ["", f"**Live rollout:** {tags['retrain.rollout']}"]
    lines += [
        "",
        "**Fate:** "
        + fate(tags, aliases, production_alias=production_alias, staging_alias=staging_alias, comparison=comparison),
    ]
    if details:
        lines += ["", details]
    return fit("\n".join(lines), DESCRIPTION_LIMIT)


def fate_kind(tags: Mapping[str, str], aliases: set[str], *, production_alias: str, staging_alias: str) -> str:
    """What became of a version, in a word or two; the first that holds: serving, rolled back, archived, rejected,
    cleared the gate, candidate, not compared (`tags` as `expand` reads them)."""
    if production_alias in aliases:
        return "serving"
    if tags.get("retrain.rolled_back"):
        return "rolled back"
    if tags.get("retrain.archived"):
        return "archived"
    if tags.get("retrain.decision") == "keep":
        return "rejected"
    if tags.get("retrain.decision") == "promote":
        return "cleared the gate"
    return "candidate" if staging_alias in aliases else "not compared"


def summary_line(kind: str, as_of: str | None, metrics: Mapping[str, Any]) -> str:
    """The description's first line, all the registry's versions list shows of it (about 32 characters, plain
    text): the fate (`fate_kind`), the as-of day, the validation ROC AUC."""
    parts = [kind, *([as_of[:10]] if as_of else [])]
    auc = metrics.get("roc_auc")
    if isinstance(auc, int | float):
        parts.append(f"AUC {auc:.3f}")
    return " · ".join(parts)


def fate(
    tags: Mapping[str, str],
    aliases: set[str],
    *,
    production_alias: str,
    staging_alias: str,
    comparison: str | None = None,
) -> str:
    """serving / candidate / rejected by the gate (why) / rolled back from / archived."""
    where = f" ({comparison})" if comparison else ""
    tags = expand(tags)
    kind = fate_kind(tags, aliases, production_alias=production_alias, staging_alias=staging_alias)
    if kind == "serving":
        return "serving (@" + production_alias + ")"
    if kind == "rolled back":
        try:
            mark = json.loads(tags["retrain.rolled_back"])
            return (
                f"rolled back from at {str(mark.get('at', '?'))[:19]} by {mark.get('actor', '?')}: "
                f"{mark.get('reason', '')}"
            )
        except ValueError:
            return "rolled back from"
    if kind == "archived":
        return f"archived (served until {tags['retrain.archived'][:19]})"
    if kind == "rejected":
        reason = tags.get("retrain.decision_reason", "")
        return f"rejected by the gate{where}" + (f": {reason}" if reason else "")
    if kind == "cleared the gate":
        return f"cleared the gate{where}, waiting to be promoted" + (
            " (@" + staging_alias + ")" if staging_alias in aliases else ""
        )
    if kind == "candidate":
        return f"candidate (@{staging_alias}), not compared yet"
    return "never compared"
