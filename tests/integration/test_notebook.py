"""notebooks/walkthrough.ipynb runs top to bottom, draws its pictures and writes only into its own folder."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"


@pytest.mark.slow
def test_walkthrough_notebook_runs_top_to_bottom_and_draws_its_pictures(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # the notebook picks its own store
        monkeypatch.delenv(var, raising=False)
    before = sorted(p.name for p in NOTEBOOK.parent.iterdir())
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError naming the cell that failed

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 3, "PSI over time, ROC AUC over time and the comparison figure"
    text = "\n".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("text", "")) for o in outputs)
    assert "Production history (newest first)" in text and "rollback" in text
    assert "| **roc_auc** |" in text  # the comparison's side-by-side table
    # store, artifacts and data all went to the notebook's temporary folder, none beside the notebook
    assert sorted(p.name for p in NOTEBOOK.parent.iterdir()) == before
    # the committed notebook carries its outputs (pictures included)
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert (
        sum(
            "image/png" in o.get("data", {})
            for c in committed.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
        )
        >= 3
    )
