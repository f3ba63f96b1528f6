"""The model registry (``models/models.yaml``): what each model is, where its file is, and that it is intact."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from ingest.settings import StrictModel

REPO_ROOT = Path(__file__).resolve().parents[1]
REGISTRY_FILE = REPO_ROOT / "models" / "models.yaml"


class InputSpec(StrictModel):
    """How an image becomes the model's input tensor."""

    name: str = Field(..., description="Input tensor name.")
    shape: list[int | str] = Field(..., description="N, C, H, W; a string marks a dynamic dimension.")
    layout: Literal["NCHW"] = "NCHW"
    colour: Literal["BGR", "RGB"] = Field(..., description="Channel order the model expects.")
    resize: Literal["letterbox_top_left", "stretch"] = Field(..., description="Keep aspect ratio and pad right/bottom, or stretch to size.")
    pad_value: float = Field(114, description="Fill of the letterbox padding (0–255).")
    scale: float = Field(1.0, description="Multiplier applied to 0–255 pixel values before mean/std.")
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rect_multiple: int | None = Field(None, ge=1, description="For a letterbox into a fully convolutional graph: the image may instead be letterboxed into the smallest canvas whose sides are multiples of this (the largest stride) and at most the declared size, e.g. 416x320 for a 4:3 frame; null = always the declared size.")

    @property
    def height(self) -> int:
        return int(self.shape[2])

    @property
    def width(self) -> int:
        return int(self.shape[3])

    @property
    def static_batch(self) -> bool:
        return isinstance(self.shape[0], int)


class OutputSpec(StrictModel):
    """How the output tensor is decoded."""

    name: str
    decoding: str = Field(..., description="yolox: [N, cells, 5+classes]; sigmoid_negated: P = sigmoid(-logit); density: [N, 1, h, w] map.")
    strides: list[int] = Field(default_factory=list, description="Grid strides of a YOLOX head, in output order.")
    person_class: int | None = Field(None, description="Index of the person class.")
    density_stride: float | None = Field(None, description="Input pixels per density-map cell.")


class ModelSpec(StrictModel):
    """One entry of ``models/models.yaml``."""

    name: str
    file: str
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    size: int = Field(..., gt=0, description="File size in bytes.")
    task: str = Field(..., description="person_boxes, fire_classifier, crowd_density, … (plugins check the task they serve).")
    description: str = ""
    licence: str
    source: str
    url: str | None = Field(None, description="Direct download URL; null when the file must be placed by hand.")
    input: InputSpec
    output: OutputSpec
    classes: list[str] = Field(default_factory=list)
    backbone: str | None = Field(None, description="Registry model whose graph this head is merged behind at load time.")

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.sha256[:12]}"


class ModelError(RuntimeError):
    """A model is unknown, missing or corrupt; the message is one line, safe to show as is."""


def default_dirs(models_dir: Path | str | None = None) -> list[Path]:
    """Folders searched for model files, in order: explicit/``GUANJIA_MODELS_DIR``, project cache, shared,
    then ``<repo>/models/trained`` (small heads the project trained itself and commits)."""
    dirs: list[Path] = []
    explicit = models_dir or os.environ.get("GUANJIA_MODELS_DIR")
    if explicit:
        dirs.append(Path(explicit))
    dirs.append(cache_dir() / "models")
    dirs.append(Path(os.environ.get("GUANJIA_SHARED_DIR", REPO_ROOT.parent / "shared")) / "models")
    dirs.append(REPO_ROOT / "models" / "trained")
    return dirs


def cache_dir() -> Path:
    """The project cache (``GUANJIA_CACHE_DIR``, default ``<repo>/.cache``)."""
    return Path(os.environ.get("GUANJIA_CACHE_DIR", REPO_ROOT / ".cache"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRegistry:
    """Model entries plus the folders their files are looked up in."""

    def __init__(self, specs: list[ModelSpec], search_dirs: list[Path], verify_cache: Path | None = None):
        self._specs = {spec.name: spec for spec in specs}
        self.search_dirs = [Path(d) for d in search_dirs]
        self._verify_cache = verify_cache
        self._located: dict[str, Path] = {}

    @classmethod
    def load(cls, registry_file: Path | str | None = None, models_dir: Path | str | None = None,
             search_dirs: list[Path] | None = None, *, trust_verified: bool = True) -> ModelRegistry:
        """Read the registry (``GUANJIA_MODELS_REGISTRY`` or ``<repo>/models/models.yaml``).

        ``trust_verified``: skip hashing a file whose size, mtime, ctime and inode match its last good
        check (``.cache/models/.verified.json``); False hashes every file located.
        """
        path = Path(registry_file or os.environ.get("GUANJIA_MODELS_REGISTRY") or REGISTRY_FILE)
        try:
            raw = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ModelError(f"model registry {path} cannot be read: {exc.strerror}") from None
        specs = []
        for i, entry in enumerate(raw.get("models", [])):
            try:
                specs.append(ModelSpec.model_validate(entry))
            except ValueError as exc:
                first = exc.errors()[0]  # type: ignore[attr-defined]
                key = ".".join(str(p) for p in first["loc"])
                raise ModelError(f"{path}: models[{i}].{key}: {first['msg']}") from None
        dirs = search_dirs if search_dirs is not None else default_dirs(models_dir)
        return cls(specs, dirs, verify_cache=cache_dir() / "models" / ".verified.json" if trust_verified else None)

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def spec(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ModelError(f"unknown model {name!r}; models/models.yaml has: {', '.join(self._specs)}") from None

    def model_id(self, name: str) -> str:
        return self.spec(name).model_id

    def candidates(self, name: str) -> list[Path]:
        spec = self.spec(name)
        return [d / spec.file for d in self.search_dirs]

    def locate(self, name: str) -> Path:
        """The first intact copy of the model's file; raises :class:`ModelError` naming every path tried."""
        if name in self._located:
            return self._located[name]
        spec = self.spec(name)
        tried: list[str] = []
        for path in self.candidates(name):
            problem = self.check_file(spec, path)
            if problem is None:
                self._located[name] = path
                return path
            tried.append(f"{path} ({problem})")
        raise ModelError(
            f"model {name}: no intact {spec.file} (expected sha256 {spec.sha256}, {spec.size} bytes); "
            f"tried: {'; '.join(tried)}; run `guanjia models fetch {name}` or place the file in one of those folders"
        )

    def check_file(self, spec: ModelSpec, path: Path) -> str | None:
        """None when ``path`` holds the model, else why not ("missing", "size …", "sha256 …")."""
        try:
            stat = path.stat()
        except OSError:
            return "missing"
        if stat.st_size != spec.size:
            return f"size {stat.st_size} != {spec.size}"
        key = str(path.resolve())
        cache = self._read_cache()
        # ctime and inode cannot be set back by a copy or `touch`, unlike mtime
        seen = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, spec.sha256]
        if cache.get(key) == seen:
            return None
        actual = sha256_file(path)
        if actual != spec.sha256:
            return f"sha256 {actual[:12]}… differs"
        cache[key] = seen
        self._write_cache(cache)
        return None

    def _read_cache(self) -> dict[str, list]:
        if self._verify_cache is None:
            return {}
        try:
            return json.loads(self._verify_cache.read_text())
        except (OSError, ValueError):
            return {}

    def _write_cache(self, cache: dict[str, list]) -> None:
        if self._verify_cache is None:
            return
        try:
            self._verify_cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._verify_cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache))
            tmp.replace(self._verify_cache)
        except OSError:
            pass  # the cache only saves start-up time
