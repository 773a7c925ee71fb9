"""notebooks/explore_lake.ipynb runs top to bottom, headless (nbclient), on the sample lake, without a cell error."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from lake_fixture import sample_lake  # noqa: F401 - shared session fixture

pytestmark = pytest.mark.slow  # the whole notebook headless in a kernel of its own (~1 min)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore_lake.ipynb"
KERNEL = "python3"


def kernel_name() -> str:
    """The python3 kernel, registered for this interpreter when missing (ipykernel is a dev dependency)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(user=True, kernel_name=KERNEL)
    return KERNEL


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for k, v in (out.get("data") or {}).items() if k.startswith("text/"))
    return "\n".join(parts)


def test_explore_notebook_runs_top_to_bottom_on_the_sample_lake(sample_lake, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    for key, value in {"ETL_CONF": sample_lake.conf, "ETL_LAKE_ROOT": str(sample_lake.lake),
                       "ETL_RELEASE_DIR": str(sample_lake.release), "ETL_DRIVER_MEMORY": "1g",
                       "ETL_WAREHOUSE_DIR": str(tmp_path / "warehouse"), "ETL_PROGRESS": "0",
                       "MPLBACKEND": "Agg"}.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name=kernel_name(), resources={"metadata": {"path": str(REPO)}})
    try:
        client.execute()  # raises CellExecutionError naming the cell on any error
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # kept for a look when the test fails
    text = outputs_text(nb)
    assert "not in the lake yet" not in text, "a section found its table missing although the sample ran every stage"
    for expected in ("counsel_chat", "WRITE", "pinned versions", "content_hashes_in_two_splits"):
        assert expected in text, expected
