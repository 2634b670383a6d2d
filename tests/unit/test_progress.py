"""The epoch progress bar: drawn on a terminal from the first epoch on, never with --json or off a terminal."""

import io

from retrain import cli


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_is_drawn_on_a_terminal_only_once_training_starts(monkeypatch):
    monkeypatch.delenv(cli.QUIET_ENV, raising=False)
    err = Terminal()
    monkeypatch.setattr(cli.sys, "stderr", err)
    close, on_epoch = cli.epoch_bar(3, True)
    assert err.getvalue() == ""  # a cycle that does not train draws nothing
    for epoch in range(3):
        on_epoch(epoch, 0.5, 0.4)
    close()
    assert "training (val loss 0.4000)" in err.getvalue() and "3/3" in err.getvalue()


def test_no_bar_with_json_off_a_terminal_or_when_a_parent_asked_for_quiet(monkeypatch):
    monkeypatch.delenv(cli.QUIET_ENV, raising=False)
    monkeypatch.setattr(cli.sys, "stderr", Terminal())
    assert cli.epoch_bar(3, False)[1] is None  # --json
    monkeypatch.setattr(cli.sys, "stderr", io.StringIO())
    assert cli.epoch_bar(3, True)[1] is None  # not a terminal
    monkeypatch.setattr(cli.sys, "stderr", Terminal())
    monkeypatch.setenv(cli.QUIET_ENV, "1")
    close, on_epoch = cli.epoch_bar(3, True)
    assert on_epoch is None
    close()


def test_a_read_of_many_day_files_draws_a_bar_on_a_terminal(tmp_path, monkeypatch):
    import pandas as pd

    from retrain import synth
    from retrain.config import load_settings
    from retrain.data import DataSource
    from retrain.progress import MIN_FILES

    synth.write(synth.SynthSpec(days=MIN_FILES + 5, rows_per_day=5, seed=3), tmp_path)
    source = DataSource(load_settings(None, [f"data.path={tmp_path}"]).data)
    monkeypatch.delenv(cli.QUIET_ENV, raising=False)
    err = Terminal()
    monkeypatch.setattr(cli.sys, "stderr", err)
    rows = source.load()
    assert len(rows) == (MIN_FILES + 5) * 5 and isinstance(rows, pd.DataFrame)
    assert f"reading {tmp_path}" in err.getvalue() and f"{MIN_FILES + 5}/{MIN_FILES + 5}" in err.getvalue()
    monkeypatch.setenv(cli.QUIET_ENV, "1")  # --json
    quiet = Terminal()
    monkeypatch.setattr(cli.sys, "stderr", quiet)
    DataSource(load_settings(None, [f"data.path={tmp_path}"]).data).load()
    assert quiet.getvalue() == ""
