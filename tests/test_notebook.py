"""The notebook runs top to bottom through the public API, so it cannot rot."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "lightweight_finetuning.ipynb"


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # run in a copy of the notebook's folder layout so the adapter lands beside it, not in the repo
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert "reload check" in outputs and "fine-tuned accuracy" in outputs
    adapter = tmp_path / "saved_adapters" / "notebook-minilm-bbc-lora"
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "tokenizer.json").exists()
    tuned = float(outputs.split("fine-tuned accuracy ")[1].split()[0])
    base = float(outputs.split("base       accuracy ")[1].split()[0])
    assert tuned > base + 0.3, (base, tuned)
