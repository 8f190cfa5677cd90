"""Manifests and the registry: the built-in model loads; every broken model says why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from portal.ai.registry import (
    ModelUnavailable,
    builtin_model_dir,
    find_model,
    list_models,
    load_manifest,
    load_model,
)


def _edit(model_dir: Path, **changes) -> None:
    path = model_dir / "manifest.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_builtin_manifest_is_complete():
    m = load_manifest(builtin_model_dir())
    assert (m.name, m.version, m.kind, m.file) == ("lightbox-quality", "1.4.0", "torchscript", "model.pt")
    assert dict(m.input) == {"size": 256, "channels": 2, "normalisation": "native-crop"}
    assert m.output_names == ["quality", "noise", "motion", "spike", "bias_field", "wraparound", "gibbs"]
    assert m.output("quality").direction == "below" and 0 < m.output("quality").threshold < 1
    assert all(o.type == "probability" and 0 < o.threshold < 1 for o in m.outputs[1:])
    # the critical threshold is the one chosen by the held-out evaluation, not a habit
    ev = json.loads((builtin_model_dir() / "evaluation.json").read_text())
    assert m.critical == {"output": "quality", "below": ev["threshold"],
                          "meaning": "likely unusable: repeat the scan while the patient is there"}
    assert m.raw["series"] == {"max_frames": ev["series"]["chosen"]["frames"], "aggregate": ev["series"]["chosen"]["aggregate"]}
    assert m.trained["script"] == "portal/ai/train_native.py" and isinstance(m.trained["seed"], int)
    assert m.model_path.stat().st_size < 10 * 1024 * 1024
    assert (builtin_model_dir() / "EVALUATION.md").is_file() and (builtin_model_dir() / "evaluation.json").is_file()
    # the manifest file itself can be given, too
    assert load_manifest(builtin_model_dir() / "manifest.json").name == "lightbox-quality"


def test_critical_and_flags_follow_the_manifest():
    m = load_manifest(builtin_model_dir())
    cut = m.critical["below"]
    assert m.is_critical({"quality": cut - 0.01}) and not m.is_critical({"quality": cut + 0.01})
    assert m.flagged({"quality": 0.4, "noise": 0.7, "motion": 0.2}) == ["quality", "noise"]


def test_load_model_runs_and_is_cached():
    runner = load_model(builtin_model_dir(), device="cpu")
    assert runner is load_model(builtin_model_dir(), device="cpu")
    [scores] = runner(np.zeros((runner.manifest.input_channels, 256, 256), np.float32))
    assert list(scores) == runner.output_names


def test_missing_manifest(tmp_path):
    with pytest.raises(ModelUnavailable) as exc:
        load_manifest(tmp_path)
    assert exc.value.suberror == "manifest_missing" and "manifest.json" in exc.value.detail


def test_bad_json(model_copy):
    (model_copy / "manifest.json").write_text('{"name": "x",')
    with pytest.raises(ModelUnavailable) as exc:
        load_manifest(model_copy)
    assert exc.value.suberror == "manifest_unreadable" and "line 1" in exc.value.detail
    (model_copy / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ModelUnavailable, match="JSON object"):
        load_manifest(model_copy)


@pytest.mark.parametrize(("changes", "says"), [
    ({"outputs": None}, "missing key(s) 'outputs'"),
    ({"version": "one"}, "'version' must look like 1.0.0"),
    ({"name": "Bad Name"}, "'name' must be lower-case"),
    ({"file": "../model.pt"}, "'file' must be a file name inside the model folder"),
    ({"input": {"size": 256, "channels": 1}}, "'input' lacks 'normalisation'"),
    ({"outputs": [{"name": "quality"}]}, "outputs[0] needs 'name' and 'type'"),
    ({"outputs": [{"name": "q", "type": "probability", "threshold": 2}]}, "between 0 and 1"),
    ({"outputs": [{"name": "q", "type": "float"}, {"name": "q", "type": "float"}]}, "appears twice"),
    ({"critical": {"output": "nope", "below": 0.3, "meaning": "x"}}, "'critical.output' 'nope'"),
    ({"critical": {"output": "quality", "meaning": "x"}}, "exactly one number"),
    ({"sha256": "abc"}, "'sha256' must be 64"),
])
def test_invalid_manifest_names_the_problem(model_copy, changes, says):
    _edit(model_copy, **changes)
    with pytest.raises(ModelUnavailable) as exc:
        load_manifest(model_copy)
    assert exc.value.suberror == "manifest_invalid"
    assert says in exc.value.detail


@pytest.mark.parametrize(("changes", "says"), [
    ({"kind": "onnx"}, "runs only torchscript"),
    ({"input": {"size": 256, "channels": 3, "normalisation": "percentile-1-99"}}, "input channels"),
    ({"input": {"size": 256, "channels": 1, "normalisation": "imagenet"}}, "normalisation 'imagenet'"),
    ({"input": {"size": 256, "channels": 1, "normalisation": "native-crop"}}, "input channels"),  # native-crop is 2
])
def test_unsupported_model(model_copy, changes, says):
    _edit(model_copy, **changes)
    with pytest.raises(ModelUnavailable) as exc:
        load_manifest(model_copy)
    assert exc.value.suberror == "unsupported_model" and says in exc.value.detail


def test_missing_or_empty_model_file(model_copy):
    (model_copy / "model.pt").unlink()
    with pytest.raises(ModelUnavailable) as exc:
        load_model(model_copy)
    assert exc.value.suberror == "model_file_missing" and "model.pt" in exc.value.detail
    (model_copy / "model.pt").write_bytes(b"")
    with pytest.raises(ModelUnavailable, match="is empty"):
        load_manifest(model_copy)


def test_corrupt_model_file_fails_its_checksum(model_copy):
    data = bytearray((model_copy / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_copy / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable) as exc:
        load_model(model_copy)
    assert exc.value.suberror == "model_file_corrupt" and "sha256" in exc.value.detail


def test_corrupt_model_file_without_checksum(model_copy):
    _edit(model_copy, sha256=None)
    (model_copy / "model.pt").write_bytes(b"not a torchscript file at all")
    with pytest.raises(ModelUnavailable, match="not a TorchScript archive"):
        load_model(model_copy)
    # a zip that torch cannot load
    import zipfile
    with zipfile.ZipFile(model_copy / "model.pt", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ModelUnavailable) as exc:
        load_model(model_copy)
    assert exc.value.suberror == "model_file_corrupt" and "cannot be loaded" in exc.value.detail


def test_manifest_that_disagrees_with_the_model(model_copy):
    data = json.loads((model_copy / "manifest.json").read_text())
    _edit(model_copy, outputs=data["outputs"][:3], critical=None)
    with pytest.raises(ModelUnavailable) as exc:
        load_model(model_copy)
    assert exc.value.suberror == "model_file_corrupt" and "lists 3 outputs" in exc.value.detail


def test_list_and_find_models(model_copy, tmp_path, caplog):
    _edit(model_copy, version="2.0.0")
    broken = tmp_path / "broken" / "9.9.9"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{")
    found = list_models([tmp_path])
    assert [(m.name, m.version) for m in found] == [("lightbox-quality", v) for v in ("2.0.0", "1.4.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0")]
    assert "Skipping the model" in caplog.text
    assert find_model("lightbox-quality", extra_dirs=[tmp_path]).version == "2.0.0"
    assert find_model("lightbox-quality").directory == builtin_model_dir()  # the newest built-in version
    with pytest.raises(ModelUnavailable) as exc:
        find_model("nope")
    assert exc.value.suberror == "model_not_found"


def test_web_import_path_does_not_import_torch():
    code = ("import sys, portal.ai, portal.ai.registry, portal.ai.infer, portal.ai.artifacts;"
            "from portal.ai.registry import list_models; list_models();"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
