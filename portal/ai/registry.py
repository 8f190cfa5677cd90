"""The model registry: manifests, validating them, loading a model to run, listing what is installed.

A model is a folder holding a TorchScript file and `manifest.json` (format in
`portal/ai/README.md`). `load_manifest` only reads JSON and checks files, so it is safe in the
web process; `load_model` imports torch (lazily) and belongs in workers, the CLI and tests.

Every problem raises `ModelUnavailable` with a `suberror` and a `detail` that says what to do:

    manifest_missing      no manifest.json where one was expected
    manifest_unreadable   not UTF-8 JSON, or not a JSON object
    manifest_invalid      a key missing or with a wrong value (the detail names it)
    unsupported_model     a kind, channel count or normalisation that Lightbox cannot run
    model_file_missing    the file the manifest names is not there (or empty)
    model_file_corrupt    checksum mismatch, not a TorchScript archive, or it fails a test run
    model_not_found       no installed model has that name (and version)
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portal.errors import LightboxError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
KINDS = ("torchscript",)
NORMALISATIONS = ("percentile-1-99", "native-crop")  # native-crop: portal/ai/native_input.py, 2 channels
CHANNELS = {"percentile-1-99": 1, "native-crop": 2}
OUTPUT_TYPES = ("float", "probability")
DIRECTIONS = ("above", "below")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
_OUTPUT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class ModelUnavailable(LightboxError):
    """A model that cannot be used; `suberror` says why and `detail` what to do about it."""

    status = 503
    error = "model_unavailable"


@dataclass(frozen=True)
class OutputSpec:
    name: str
    type: str  # "float" or "probability"
    description: str = ""
    threshold: float | None = None
    direction: str = "above"  # a value on this side of the threshold is flagged

    def flagged(self, value: float) -> bool:
        """Whether `value` crosses this output's threshold (never, without one)."""
        if self.threshold is None:
            return False
        return value < self.threshold if self.direction == "below" else value > self.threshold


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    kind: str
    file: str
    input: Mapping[str, Any]
    outputs: tuple[OutputSpec, ...]
    critical: Mapping[str, Any] | None
    trained: Mapping[str, Any] | None
    directory: Path
    sha256: str | None = None
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def model_path(self) -> Path:
        return self.directory / self.file

    @property
    def input_size(self) -> int:
        return int(self.input["size"])

    @property
    def input_channels(self) -> int:
        return int(self.input["channels"])

    @property
    def normalisation(self) -> str:
        return str(self.input["normalisation"])

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def output(self, name: str) -> OutputSpec:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(name)

    def is_critical(self, scores: Mapping[str, float]) -> bool:
        """Whether `scores` cross the manifest's critical threshold (False without one)."""
        if not self.critical or self.critical["output"] not in scores:
            return False
        value = float(scores[self.critical["output"]])
        if "below" in self.critical:
            return value < float(self.critical["below"])
        return value > float(self.critical["above"])

    def flagged(self, scores: Mapping[str, float]) -> list[str]:
        """The outputs whose value crosses their own threshold, in manifest order."""
        return [o.name for o in self.outputs if o.name in scores and o.flagged(float(scores[o.name]))]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.raw))


# --- reading and validating ----------------------------------------------------------------------

def _invalid(where: Path, what: str) -> ModelUnavailable:
    return ModelUnavailable(f"The model manifest {where} is invalid: {what}. Fix it, or reinstall the model.",
                            "manifest_invalid")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _manifest_file(path: str | Path) -> Path:
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() or path.suffix != ".json" else path


def load_manifest(path: str | Path, *, check_file: bool = True) -> Manifest:
    """Read and validate a manifest: `path` is a model folder or its manifest.json.

    With `check_file`, the model file must exist, be non-empty, be a TorchScript (zip) archive
    and match the manifest's `sha256` when it gives one. Raises `ModelUnavailable`.
    """
    file = _manifest_file(path)
    if not file.is_file():
        raise ModelUnavailable(
            f"No model manifest at {file}. A model folder needs a {MANIFEST_NAME} beside its model file "
            "(see portal/ai/README.md).", "manifest_missing")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelUnavailable(f"The model manifest {file} is not UTF-8 text ({exc}); rewrite it as JSON.",
                               "manifest_unreadable") from exc
    except json.JSONDecodeError as exc:
        raise ModelUnavailable(f"The model manifest {file} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                               f"column {exc.colno}. Fix the JSON.", "manifest_unreadable") from exc
    if not isinstance(data, dict):
        raise ModelUnavailable(f"The model manifest {file} must hold a JSON object, not {type(data).__name__}.",
                               "manifest_unreadable")
    manifest = _validate(data, file)
    if check_file:
        check_model_file(manifest)
    return manifest


def _validate(data: dict, file: Path) -> Manifest:
    missing = [k for k in ("name", "version", "kind", "file", "input", "outputs") if k not in data]
    if missing:
        raise _invalid(file, f"missing key(s) {', '.join(repr(k) for k in missing)}")
    name, version, kind, model_file = data["name"], data["version"], data["kind"], data["file"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _invalid(file, f"'name' must be lower-case letters, digits, '.', '_' or '-' (got {name!r})")
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise _invalid(file, f"'version' must look like 1.0.0 (got {version!r})")
    if kind not in KINDS:
        raise ModelUnavailable(f"The model {name} {version} is of kind {kind!r}; Lightbox runs only "
                               f"{', '.join(KINDS)}. Export it with torch.jit.script or torch.jit.trace.",
                               "unsupported_model")
    if (not isinstance(model_file, str) or not model_file or Path(model_file).is_absolute()
            or ".." in Path(model_file).parts or "\\" in model_file):
        raise _invalid(file, f"'file' must be a file name inside the model folder (got {model_file!r})")

    spec = data["input"]
    if not isinstance(spec, dict):
        raise _invalid(file, "'input' must be an object with size, channels and normalisation")
    for key in ("size", "channels", "normalisation"):
        if key not in spec:
            raise _invalid(file, f"'input' lacks {key!r}")
    if not isinstance(spec["size"], int) or isinstance(spec["size"], bool) or not 8 <= spec["size"] <= 4096:
        raise _invalid(file, f"'input.size' must be a whole number of pixels from 8 to 4096 (got {spec['size']!r})")
    if spec["normalisation"] not in NORMALISATIONS:
        raise ModelUnavailable(f"The model {name} {version} asks for normalisation {spec['normalisation']!r}; "
                               f"Lightbox knows {', '.join(NORMALISATIONS)}.", "unsupported_model")
    if spec["channels"] != CHANNELS[spec["normalisation"]]:
        raise ModelUnavailable(f"The model {name} {version} wants {spec['channels']!r} input channels; Lightbox "
                               f"feeds {CHANNELS[spec['normalisation']]} with normalisation {spec['normalisation']!r}.",
                               "unsupported_model")

    raw_outputs = data["outputs"]
    if not isinstance(raw_outputs, list) or not raw_outputs:
        raise _invalid(file, "'outputs' must be a non-empty list")
    outputs: list[OutputSpec] = []
    for i, o in enumerate(raw_outputs):
        where = f"outputs[{i}]"
        if not isinstance(o, dict):
            raise _invalid(file, f"{where} must be an object")
        if "name" not in o or "type" not in o:
            raise _invalid(file, f"{where} needs 'name' and 'type'")
        if not isinstance(o["name"], str) or not _OUTPUT_RE.match(o["name"]):
            raise _invalid(file, f"{where}.name must be an identifier such as noise_level (got {o['name']!r})")
        if o["name"] in {x.name for x in outputs}:
            raise _invalid(file, f"output {o['name']!r} appears twice")
        if o["type"] not in OUTPUT_TYPES:
            raise _invalid(file, f"{where}.type must be one of {', '.join(OUTPUT_TYPES)} (got {o['type']!r})")
        threshold = o.get("threshold")
        if threshold is not None and not _number(threshold):
            raise _invalid(file, f"{where}.threshold must be a number (got {threshold!r})")
        if o["type"] == "probability" and threshold is not None and not 0.0 <= threshold <= 1.0:
            raise _invalid(file, f"{where}.threshold of a probability must be between 0 and 1 (got {threshold})")
        direction = o.get("direction", "above")
        if direction not in DIRECTIONS:
            raise _invalid(file, f"{where}.direction must be 'above' or 'below' (got {direction!r})")
        outputs.append(OutputSpec(o["name"], o["type"], str(o.get("description", "")),
                                  None if threshold is None else float(threshold), direction))

    critical = data.get("critical")
    if critical is not None:
        if not isinstance(critical, dict) or "output" not in critical:
            raise _invalid(file, "'critical' must be an object naming an 'output'")
        if critical["output"] not in {o.name for o in outputs}:
            raise _invalid(file, f"'critical.output' {critical['output']!r} is not one of the outputs")
        sides = [k for k in ("below", "above") if k in critical]
        if len(sides) != 1 or not _number(critical[sides[0]]):
            raise _invalid(file, "'critical' needs exactly one number, 'below' or 'above'")
        if not isinstance(critical.get("meaning", ""), str) or not critical.get("meaning"):
            raise _invalid(file, "'critical.meaning' must say in words what a critical result means")
    trained = data.get("trained")
    if trained is not None and not isinstance(trained, dict):
        raise _invalid(file, "'trained' must be an object (seed, script, date)")
    sha = data.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise _invalid(file, "'sha256' must be 64 lower-case hex digits")
    return Manifest(name=name, version=version, kind=kind, file=model_file, input=dict(spec),
                    outputs=tuple(outputs), critical=critical, trained=trained, directory=file.parent,
                    sha256=sha, description=str(data.get("description", "")), raw=data)


_CHECKED: dict[tuple, bool] = {}  # (file, mtime, size, sha256) already checked: listing stays cheap


def check_model_file(manifest: Manifest) -> None:
    """The model file exists, is a TorchScript archive and matches the manifest's sha256."""
    path = manifest.model_path
    try:
        stat = path.stat()
        seen = (str(path), stat.st_mtime_ns, stat.st_size, manifest.sha256)
    except OSError:
        seen = None
    if seen is not None and seen in _CHECKED:
        return
    _check_model_file(manifest)
    if seen is not None:
        _CHECKED[seen] = True


def _check_model_file(manifest: Manifest) -> None:
    path = manifest.model_path
    label = f"{manifest.name} {manifest.version}"
    if not path.is_file():
        raise ModelUnavailable(f"The model file {path} of {label} is missing. Restore it, or reinstall the model "
                               "(for the built-in model: python -m portal.ai.train_quality).", "model_file_missing")
    if path.stat().st_size == 0:
        raise ModelUnavailable(f"The model file {path} of {label} is empty. Restore it, or reinstall the model.",
                               "model_file_missing")
    if manifest.sha256:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != manifest.sha256:
            raise ModelUnavailable(f"The model file {path} of {label} is corrupt or was replaced: its sha256 is "
                                   f"{digest[:12]}…, the manifest expects {manifest.sha256[:12]}…. Restore the "
                                   "file, or update the manifest if the new file is intended.", "model_file_corrupt")
    if not zipfile.is_zipfile(path):
        raise ModelUnavailable(f"The model file {path} of {label} is not a TorchScript archive (a zip file "
                               "written by torch.jit.save). Restore it, or export the model again.",
                               "model_file_corrupt")


# --- running ---------------------------------------------------------------------------------

class ModelRunner:
    """A loaded model: call it on preprocessed inputs to get one dict of scores per image.

        runner = load_model(builtin_model_dir())
        x = runner.load_frame(path, frame=0)          # (size, size) float32 in [0, 1]
        [scores] = runner([x])                        # {"quality": 0.91, "noise": 0.03, ...}
        heat = runner.heatmap(x)                      # (size, size) float32 in [0, 1]
    """

    def __init__(self, manifest: Manifest, module: Any, device: Any):
        self.manifest = manifest
        self.module = module
        self.device = device

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def output_names(self) -> list[str]:
        return self.manifest.output_names

    def preprocess(self, values):
        """A 2D frame in any units → the model's input: (size, size) for percentile-1-99, (2, size, size) for
        native-crop (the whole frame and a window at native resolution)."""
        from portal.ai import quality_model as qm
        return qm.preprocess(values, self.manifest.input_size, self.manifest.normalisation)

    def load_frame(self, path: str | Path, frame: int = 0):
        from portal.ai import quality_model as qm
        return qm.load_frame(path, frame, self.manifest.input_size, self.manifest.normalisation)

    def __call__(self, images, *, batch_size: int = 16) -> list[dict[str, float]]:
        from portal.ai import quality_model as qm
        return qm.predict(self.module, images, names=self.output_names, batch_size=batch_size,
                          channels=self.manifest.input_channels)

    def heatmap(self, image, target: str | None = None):
        """Grad-CAM when the model exports `features` and `head`, else occlusion; (size, size) in [0, 1]."""
        from portal.ai import quality_model as qm
        target = target or self.output_names[0]
        if hasattr(self.module, "features") and hasattr(self.module, "head"):
            return qm.heatmap(self.module, image, target)
        return qm.occlusion_heatmap(self.module, image, self.output_names.index(target),
                                    lower_is_worse=self.manifest.output(target).direction == "below",
                                    channels=self.manifest.input_channels)


_CACHE: dict[tuple, ModelRunner] = {}
_CACHE_LOCK = threading.Lock()


def load_model(manifest_dir: str | Path, *, device: str | None = None) -> ModelRunner:
    """Validate the manifest, load the TorchScript model onto `device` (CUDA when available, else
    the CPU) and test-run it once; cached per folder, file version and device. Raises
    `ModelUnavailable` with a reason."""
    manifest = load_manifest(manifest_dir)
    import torch  # only here: listing models must not need torch

    from portal.ai import quality_model as qm

    target = qm.pick_device(device)
    stat = manifest.model_path.stat()
    key = (str(manifest.model_path.resolve()), stat.st_mtime_ns, stat.st_size, manifest.sha256, str(target))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    label = f"{manifest.name} {manifest.version}"
    try:
        with warnings.catch_warnings():  # torch 2.13 calls TorchScript deprecated; it is the format we ship
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(manifest.model_path), map_location=target)
    except Exception as exc:  # torch raises RuntimeError, ValueError, zip errors... for a bad file
        raise ModelUnavailable(f"The model file {manifest.model_path} of {label} cannot be loaded by torch "
                               f"{torch.__version__} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
                               "Restore the file or export the model again.", "model_file_corrupt") from exc
    module.eval()
    size = manifest.input_size
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, manifest.input_channels, size, size, device=target))
    except Exception as exc:
        raise ModelUnavailable(f"The model {label} fails on a 1x{manifest.input_channels}x{size}x{size} input "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); its manifest does not "
                               "match the model.", "model_file_corrupt") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, len(manifest.outputs)):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelUnavailable(f"The model {label} returns {shape} for one image, but its manifest lists "
                               f"{len(manifest.outputs)} outputs: make them agree.", "model_file_corrupt")
    runner = ModelRunner(manifest, module, target)
    with _CACHE_LOCK:
        _CACHE[key] = runner
    return runner


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


# --- what is installed -------------------------------------------------------------------------

def builtin_models_root() -> Path:
    return Path(__file__).resolve().parent / "models"


def builtin_model_dir() -> Path:
    """The folder of the newest committed, usable version of the built-in quality model (a folder without
    its weights is skipped)."""
    usable = [m for m in list_models() if m.name == "lightbox-quality" and _is_builtin(m.directory)]
    if not usable:
        raise ModelUnavailable("No usable built-in lightbox-quality model is installed; reinstall Lightbox or run "
                               "python -m portal.ai.train_quality.", "model_not_found")
    return max(usable, key=lambda m: version_key(m.version)).directory


def _is_builtin(folder: Path) -> bool:
    return builtin_models_root() in folder.resolve().parents


def version_key(version: str) -> tuple:
    """Sort key of a MAJOR.MINOR.PATCH[-pre][+build] version: a pre-release sorts before its release."""
    core, _, rest = version.partition("-")
    core = core.partition("+")[0]
    return (*(int(p) for p in core.split(".")), rest == "", rest)


def _candidate_dirs(root: Path) -> Iterable[Path]:
    if (root / MANIFEST_NAME).is_file():
        yield root
        return
    for depth in ("*", "*/*"):
        for m in sorted(root.glob(f"{depth}/{MANIFEST_NAME}")):
            yield m.parent


_WARNED: set[tuple[str, str]] = set()


def list_models(extra_dirs: Sequence[str | Path] = ()) -> list[Manifest]:
    """Valid models: the built-in ones, then those under `extra_dirs` (a model folder, or a folder
    of `name/version/` folders). Sorted by name, newest version first. A broken model is skipped
    with a warning in the log; the first of two with the same name and version wins."""
    found: dict[tuple[str, str], Manifest] = {}
    for root in (builtin_models_root(), *map(Path, extra_dirs)):
        if not root.is_dir():
            continue
        for folder in _candidate_dirs(root):
            try:
                manifest = load_manifest(folder)
            except ModelUnavailable as exc:
                if (str(folder), exc.detail) not in _WARNED:  # once per folder and reason, not on every listing
                    _WARNED.add((str(folder), exc.detail))
                    log.warning("Skipping the model in %s: %s", folder, exc.detail)
                continue
            key = (manifest.name, manifest.version)
            if key in found:
                if found[key].directory.resolve() != manifest.directory.resolve():
                    log.warning("Skipping %s: %s %s is already installed from %s", folder, *key, found[key].directory)
                continue
            found[key] = manifest
    newest_first = sorted(found.values(), key=lambda m: version_key(m.version), reverse=True)
    return sorted(newest_first, key=lambda m: m.name)  # stable: versions stay newest first


def find_model(name: str, version: str | None = None, extra_dirs: Sequence[str | Path] = ()) -> Manifest:
    """The installed model `name` at `version`, or its newest version. Raises `ModelUnavailable`."""
    candidates = [m for m in list_models(extra_dirs) if m.name == name]
    if version is not None:
        candidates = [m for m in candidates if m.version == version]
    if not candidates:
        what = f"{name} {version}" if version else name
        raise ModelUnavailable(f"No installed model {what}. `lightbox model list` shows what is installed.",
                               "model_not_found")
    return max(candidates, key=lambda m: version_key(m.version))
