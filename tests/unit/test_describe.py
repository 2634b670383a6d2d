"""The markdown the MLflow UI shows: numbers, order, links, limits."""

from __future__ import annotations

from types import SimpleNamespace

from retrain import describe
from retrain.cli import unless_default
from retrain.monitoring import run_name as check_name
from retrain.registry.rules import Move


def comparison(**over):
    c = {
        "model_name": "churn",
        "candidate_version": "3",
        "incumbent_version": "1",
        "as_of": "2026-05-30",
        "window_start": "2026-05-21",
        "window_end": "2026-05-30",
        "n_rows": 2500,
        "backtest": False,
        "candidate_threshold": 0.31234,
        "incumbent_threshold": 0.5,
        "candidate_metrics": {"roc_auc": 0.7381234, "f1": 0.41, "log_loss": 0.3301, "recall": 0.52},
        "incumbent_metrics": {"roc_auc": 0.5932, "f1": 0.44, "log_loss": 0.41, "recall": 0.49},
        "deltas": {"roc_auc": 0.1449234, "f1": -0.03, "log_loss": -0.0799, "recall": 0.03},
        "delong": {"delta": 0.1449234, "ci_low": 0.12, "ci_high": 0.17, "p_value_one_sided": 1.234e-9},
        "checks": [{"name": "golden", "passed": True, "detail": "ok"}],
        "decision": {
            "decision": "promote",
            "reason": "roc_auc improved by 0.1449 (p 1.2e-09)",
            "reasons": ["roc_auc improved by 0.1449 (p 1.2e-09)", "guardrail f1 dropped 0.03 > 0.02"],
        },
    }
    c.update(over)
    return c


def row(markdown: str, first: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [x.strip() for x in line.strip().strip("|").split("|")]
        if cells[0] == first:
            return cells
    raise AssertionError(first)


def test_comparison_table_is_side_by_side_with_four_significant_digits_and_guardrails():
    text = describe.comparison_markdown(
        comparison(),
        primary="roc_auc",
        min_improvement=0.01,
        guardrails={"f1": 0.02, "log_loss": 0.05},
        links={"candidate": "[v3](x)"},
    )
    assert text.startswith("## PROMOTE: churn v3 vs v1 (as of 2026-05-30)")
    assert row(text, "**roc_auc**") == ["**roc_auc**", "0.7381", "0.5932", "+0.1449", "primary: rise >= 0.01 ✓"]
    assert row(text, "f1")[3:] == ["-0.03", "drop <= 0.02 ✗"]
    assert row(text, "log_loss")[3:] == ["-0.0799", "rise <= 0.05 ✓"]
    assert row(text, "recall")[4] == ""
    assert row(text, "decision threshold")[1:3] == ["0.3123", "0.5"]
    assert "difference +0.1449, 95% CI [0.12, 0.17], one-sided p = 1.234e-09" in text
    assert "- guardrail f1 dropped 0.03 > 0.02" in text and "2026-05-21..2026-05-30" in text


def test_comparison_without_production_says_so():
    text = describe.comparison_markdown(
        comparison(incumbent_version=None, incumbent_metrics=None, deltas={}, delong={}),
        primary="roc_auc",
        min_improvement=0.01,
        guardrails={},
        links={},
    )
    assert "v3 vs no production" in text and row(text, "**roc_auc**")[2:4] == ["-", "-"]


def move(seq, frm, to, kind="promote", reason="r", comparison=None):
    return Move(seq, frm, to, f"2026-05-{seq:02d}T10:00:00+00:00", "ann@host", kind, reason, comparison)


def test_history_is_newest_first_with_links_and_fits_mlflows_column():
    moves = [
        move(3, "2", "1", "rollback", "live | accuracy fell"),
        move(2, "1", "2", comparison="abc"),
        move(1, None, "1"),
    ]
    links = {"abc": "[comparison](#/experiments/2/runs/abc)"}
    text = describe.history_markdown(
        "churn", "1", [describe.move_row("churn", m, links.get(m.comparison_run_id, "-")) for m in moves]
    )
    rows = describe.history_rows(text)
    assert [r.split("|")[1].strip() for r in rows] == ["3", "2", "1"]
    assert (
        "live \\| accuracy fell" in rows[0]
        and "[v2](#/models/churn/versions/2?workflowType=machine_learning) -> [v1]" in rows[0]
    )
    assert "[comparison](#/experiments/2/runs/abc)" in rows[1] and "(none) -> [v1]" in rows[2]
    # one more move goes on top; a move redone (repair) is not shown twice
    after = describe.history_after_move("churn", "2", describe.move_row("churn", move(4, "1", "2")), text)
    assert [r.split("|")[1].strip() for r in describe.history_rows(after)] == ["4", "3", "2", "1"]
    again = describe.history_after_move("churn", "2", describe.move_row("churn", move(4, "1", "2")), after)
    assert describe.history_rows(again) == describe.history_rows(after)
    many = [describe.move_row("churn", move(n, str(n - 1), str(n), reason="x" * 500)) for n in range(400, 0, -1)]
    long = describe.history_markdown("churn", "400", many)
    assert len(long) <= describe.DESCRIPTION_LIMIT and "older moves: `retrain history --before" in long


def test_version_fate_follows_its_tags_and_aliases():
    def fate(tags, aliases=()):
        return describe.fate(tags, set(aliases), production_alias="production", staging_alias="staging")

    assert fate({}, ["production"]) == "serving (@production)"
    assert fate({"retrain.rolled_back": '{"at": "2026-05-30T10:00:00", "actor": "ann", "reason": "slow"}'}).startswith(
        "rolled back from at 2026-05-30T10:00:00 by ann: slow"
    )
    assert fate({"retrain.archived": "2026-05-30T10:00:00+00:00"}) == "archived (served until 2026-05-30T10:00:00)"
    assert fate({"retrain.decision": "keep", "retrain.decision_reason": "no gain"}) == "rejected by the gate: no gain"
    assert fate({}, ["staging"]) == "candidate (@staging), not compared yet"


def test_check_run_names_say_what_fired():
    def decision(retrain, *reasons):
        return SimpleNamespace(retrain=retrain, reasons=reasons)

    assert (
        check_name(
            "2026-05-30",
            decision(
                True, "drift: income PSI 0.4 > 0.2", "drift: age PSI 0.3 > 0.2", "age: production trained 40 days"
            ),
        )
        == "check 2026-05-30: drift, age"
    )
    assert check_name("2026-05-30", decision(False)) == "check 2026-05-30: ok"
    assert check_name("2026-05-30", decision(True, "no production model")) == "check 2026-05-30: no production model"


def test_mlproject_default_words_mean_not_given():
    assert unless_default("latest", "latest") is None and unless_default("", "latest") is None
    assert unless_default("2026-05-30", "latest") == "2026-05-30"


def test_comparison_table_shows_the_rules_the_gate_applied():
    """Threshold guardrails at matched operating points; the primary metric by the mode's confidence bound."""
    matched = {"f1": {"candidate": 0.47, "incumbent": 0.46}, "recall": {"candidate": 0.50, "incumbent": 0.52}}
    decision = {**comparison()["decision"], "mode": "unless_shown_worse", "lower_bound": -0.01, "upper_bound": 0.03}
    text = describe.comparison_markdown(
        comparison(matched=matched, decision=decision),
        primary="roc_auc",
        min_improvement=0.01,
        guardrails={"f1": 0.02, "recall": 0.05},
        links={},
        margin=0.005,
    )
    assert row(text, "f1")[3:] == ["-0.03", "drop <= 0.02 at matched operating points: +0.01 ✓"]
    assert row(text, "recall")[3:] == ["+0.03", "drop <= 0.05 at matched operating points: -0.02 ✓"]
    assert row(text, "**roc_auc**")[4] == "primary: not shown worse (upper bound >= -0.005) (+0.03) ✓"
    shown_worse = {**decision, "mode": "non_inferiority", "lower_bound": -0.02}
    text = describe.comparison_markdown(
        comparison(decision=shown_worse), primary="roc_auc", min_improvement=0.01, guardrails={}, links={}
    )
    assert row(text, "**roc_auc**")[4] == "primary: lower bound > -0.005 (-0.02) ✗"


def _table_marks(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|") and ("✓" in line or "✗" in line)]


def test_comparison_table_renders_each_gate_mode_with_marks_that_agree_with_the_decision():
    """Superiority by its min rise, non-inferiority and unless_shown_worse by their bound and margin, a first
    model by its floors; a PROMOTE carries no cross, a KEEP a cross on the rule that held it back."""
    small = {"roc_auc": 0.004, "f1": 0.0, "log_loss": -0.001, "recall": 0.0}  # below min_improvement 0.01
    base = comparison(deltas=small)
    cases = {
        "superiority": ({"mode": "superiority", "decision": "keep"}, "primary: rise >= 0.01 ✗"),
        "non_inferiority": (
            {"mode": "non_inferiority", "decision": "promote", "lower_bound": -0.002},
            "primary: lower bound > -0.005 (-0.002) ✓",
        ),
        "unless_shown_worse": (
            {"mode": "unless_shown_worse", "decision": "promote", "lower_bound": -0.02, "upper_bound": 0.01},
            "primary: not shown worse (upper bound >= -0.005) (+0.01) ✓",
        ),
    }
    for mode, (decision, rule) in cases.items():
        text = describe.comparison_markdown(
            {**base, "decision": {**base["decision"], **decision}},
            primary="roc_auc",
            min_improvement=0.01,
            guardrails={"log_loss": 0.05},
            links={},
            margin=0.005,
        )
        assert row(text, "**roc_auc**")[4] == rule, mode
        marks = "".join(_table_marks(text))
        assert ("✗" not in marks) if decision["decision"] == "promote" else ("✗" in marks), mode

    floors = [
        {
            "name": "roc_auc",
            "kind": "relative",
            "metric": "roc_auc",
            "value": 0.74,
            "bound": 0.5,
            "passed": True,
            "detail": "roc_auc 0.7400 is significantly above 0.5 (DeLong one-sided p < 1e-300, alpha 0.05)",
        },
        {
            "name": "log_loss",
            "kind": "relative",
            "metric": "log_loss",
            "value": 0.33,
            "bound": 0.45,
            "passed": True,
            "detail": "log_loss 0.3300 is below the constant predictor's 0.4500",
        },
    ]
    first = comparison(
        incumbent_version=None,
        incumbent_metrics=None,
        deltas={},
        delong={},
        decision={"decision": "promote", "reason": "floors", "reasons": [], "mode": "floors", "floors": floors},
    )
    text = describe.comparison_markdown(first, primary="roc_auc", min_improvement=0.01, guardrails={}, links={})
    assert row(text, "**roc_auc**")[4] == "floor >= 0.5 ✓" and row(text, "log_loss")[4] == "floor <= 0.45 ✓"
    assert "rise >=" not in text and "- ✓ roc_auc 0.7400 is significantly above 0.5" in text


def test_a_p_value_that_underflows_is_not_printed_as_zero():
    text = describe.comparison_markdown(
        comparison(delong={"delta": 0.2, "ci_low": 0.1, "ci_high": 0.3, "p_value_one_sided": 0.0}),
        primary="roc_auc",
        min_improvement=0.01,
        guardrails={},
        links={},
    )
    assert "one-sided p < 1e-300" in text and "p = 0" not in text


def test_shorten_cuts_at_a_word_with_an_ellipsis():
    assert describe.shorten("short", 10) == "short"
    text = "the model served badly after the pricing change"
    cut = describe.shorten(text, 20)
    assert cut == "the model served…" and len(cut) <= 20


def test_training_details_go_last_in_the_version_description_and_survive_a_redraw():
    details = describe.details_markdown(
        {
            "retrain.fit_rows": "5750",
            "retrain.features": "tenure,plan",
            "retrain.rows_note": "x " * 400,
            "retrain.a": "",
        }
    )
    assert details is not None and details.startswith(describe.DETAILS_HEAD)
    assert "- `fit_rows`: 5750" in details and "- `features`: tenure,plan" in details and "`a`" not in details
    assert max(len(line) for line in details.splitlines()) < 320 and "..." in details  # long values cut
    tags = {"retrain.as_of": "2026-03-01", "retrain.threshold": "0.4", "retrain.threshold_policy": "max_f1"}
    kw = {"production_alias": "production", "staging_alias": "staging"}
    first = describe.version_markdown("m", "3", tags, ["staging"], details=details, **kw)
    assert first.endswith(details) and first.index("**Fate:**") < first.index(describe.DETAILS_HEAD)
    assert describe.details_of(first) == details
    redrawn = describe.version_markdown("m", "3", tags, ["production"], details=describe.details_of(first), **kw)
    assert "serving (@production)" in redrawn and redrawn.endswith(details)
    assert describe.details_of("## m v1\n\n**Fate:** never compared") is None
    assert describe.details_markdown({}) is None
