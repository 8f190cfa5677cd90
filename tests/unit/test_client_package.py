"""The Python client's package stays light and its example notebook stays valid (nbformat 4, code that parses)."""

from __future__ import annotations

import ast
import json
import tomllib
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"


def test_the_client_depends_on_light_packages_only_and_never_imports_the_server():
    meta = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert meta["name"] == "lightbox-client"
    assert sorted(d.split(">")[0].split("=")[0].strip() for d in meta["dependencies"]) == ["httpx", "tqdm"]
    for source in (CLIENT / "lightbox_client").glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"portal", "torch", "pydicom", "litestar", "piccolo", "numpy"}, (source, imported)


def test_the_example_notebook_is_valid_and_plots_a_qc_summary():
    nb = json.loads((CLIENT / "examples" / "qc_summary.ipynb").read_text())
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["language"] == "python"
    code = []
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["source"], list) and cell["id"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and "execution_count" in cell
            source = "".join(cell["source"])
            ast.parse(source)
            code.append(source)
    text = "\n".join(code)
    assert "from lightbox_client import Client" in text and "lb.series(" in text and "lb.decisions(" in text
    assert "matplotlib" in text and "plt.show()" in text
