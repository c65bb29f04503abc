"""The notebook is committed executed (it reads on a code host without running it), and it still runs top to
bottom: the test executes it again."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "lightweight_finetuning.ipynb"


def _text(notebook) -> str:
    return "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))


def test_committed_with_its_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.get("outputs") for cell in code[1:]), "every step shows its result"
    source = "".join(cell.source for cell in code)
    for call in ("LoraConfig(", "get_peft_model(", "Trainer(", ".save_pretrained(",
                 "AutoPeftModelForSequenceClassification.from_pretrained("):
        assert call in source, call
    assert "fine-tuned accuracy" in _text(notebook)


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # run in a temporary folder so the adapter lands there, not in the repo
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = _text(notebook)
    assert "reload check" in outputs and "fine-tuned accuracy" in outputs
    adapter = tmp_path / "saved_adapters" / "notebook-minilm-bbc-lora"
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "tokenizer.json").exists()
    tuned = float(outputs.split("fine-tuned accuracy ")[1].split()[0])
    base = float(outputs.split("base       accuracy ")[1].split()[0])
    assert tuned > base + 0.3, (base, tuned)
