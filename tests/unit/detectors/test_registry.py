"""The model registry: lookup order, sha256 check, and one clear error for a missing or corrupt model."""

import os
import shutil

import pytest
from click.testing import CliRunner

from detectors.registry import REGISTRY_FILE, ModelError, ModelRegistry
from detectors.runtime import Runtime
from tests.plugins.shared import shared_path

FIRE = "shufflenetv2_onfire_224"


def registry_in(*dirs, cache=None):
    reg = ModelRegistry.load(search_dirs=list(dirs))
    reg._verify_cache = cache
    return reg


def test_registry_lists_the_three_shared_models():
    reg = ModelRegistry.load()
    assert {"yolox_nano_coco_416", "person_detector_light_192", FIRE} <= set(reg.names)
    assert reg.model_id(FIRE) == "shufflenetv2_onfire_224@0d541ee83d8c"
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        reg.spec("nope")


def test_missing_model_names_model_paths_and_sha(tmp_path):
    reg = registry_in(tmp_path / "a", tmp_path / "b")
    with pytest.raises(ModelError) as err:
        Runtime().model(reg, FIRE)
    msg = str(err.value)
    assert "\n" not in msg
    assert FIRE in msg and str(tmp_path / "a" / f"{FIRE}.onnx") in msg and str(tmp_path / "b") in msg
    assert "0d541ee83d8caf6eed8461ca55b1b2cbeccb181f584bb87ab47fdcf52e8e685e" in msg
    assert "missing" in msg


def test_corrupt_copy_is_refused_and_next_folder_used(tmp_path):
    good = shared_path("models", f"{FIRE}.onnx")
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    data = bytearray(good.read_bytes())
    data[1000] ^= 0xFF  # same size, one byte flipped
    (bad_dir / good.name).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"sha256 .* differs") as err:
        registry_in(bad_dir).locate(FIRE)
    assert "Traceback" not in str(err.value) and FIRE in str(err.value)
    assert registry_in(bad_dir, good.parent).locate(FIRE) == good.parent / good.name


def test_truncated_copy_reports_size(tmp_path):
    good = shared_path("models", f"{FIRE}.onnx")
    (tmp_path / good.name).write_bytes(good.read_bytes()[:100])
    with pytest.raises(ModelError, match="size 100 != 737680"):
        registry_in(tmp_path).locate(FIRE)


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_verification_cache_notices_a_rewritten_file(tmp_path, keep_mtime):
    good = shared_path("models", f"{FIRE}.onnx")
    copy = tmp_path / "m" / good.name
    copy.parent.mkdir()
    shutil.copy(good, copy)
    cache = tmp_path / "verified.json"
    assert registry_in(copy.parent, cache=cache).locate(FIRE) == copy
    assert cache.exists()
    before = copy.stat()
    data = bytearray(copy.read_bytes())
    data[5000] ^= 0xFF
    copy.write_bytes(bytes(data))
    # same size; the mtime of the cached check restored, or a different one
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns) if keep_mtime else (1, 1))
    with pytest.raises(ModelError, match="differs"):
        registry_in(copy.parent, cache=cache).locate(FIRE)


def test_models_verify_hashes_files_the_cache_would_trust(tmp_path, monkeypatch):
    import json

    from pipeline.cli import cli

    good = shared_path("models", f"{FIRE}.onnx")
    models = tmp_path / "m"
    models.mkdir()
    data = bytearray(good.read_bytes())
    data[5000] ^= 0xFF
    (models / good.name).write_bytes(bytes(data))
    st = (models / good.name).stat()
    spec = ModelRegistry.load().spec(FIRE)
    cache = tmp_path / "cache" / "models" / ".verified.json"
    cache.parent.mkdir(parents=True)
    forged = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, spec.sha256]
    cache.write_text(json.dumps({str((models / good.name).resolve()): forged}))
    monkeypatch.setenv("GUANJIA_SHARED_DIR", str(tmp_path / "noshared"))
    monkeypatch.setenv("GUANJIA_CACHE_DIR", str(tmp_path / "cache"))
    assert ModelRegistry.load(models_dir=models).locate(FIRE) == models / good.name  # the loader trusts the entry
    result = CliRunner().invoke(cli, ["models", "verify", "--models-dir", str(models), FIRE])
    assert result.exit_code == 1 and "differs" in result.output


def test_models_fetch_reports_an_unknown_name_and_goes_on(tmp_path, monkeypatch):
    from pipeline.cli import cli

    monkeypatch.setenv("GUANJIA_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["models", "fetch", FIRE, "no_such_model"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"present  {FIRE}" in result.output
    assert "FAILED   unknown model 'no_such_model'" in result.output and "Traceback" not in result.output


def test_models_verify_cli_fails_with_the_message(tmp_path, monkeypatch):
    from pipeline.cli import cli

    monkeypatch.setenv("GUANJIA_SHARED_DIR", str(tmp_path / "noshared"))
    monkeypatch.setenv("GUANJIA_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["models", "verify", "--models-dir", str(tmp_path / "empty"), FIRE])
    assert result.exit_code == 1
    assert "FAILED" in result.output and "expected sha256 0d541ee8" in result.output


def test_models_fetch_without_url_says_where_to_place_the_file(tmp_path, monkeypatch):
    from pipeline.cli import cli

    monkeypatch.setenv("GUANJIA_SHARED_DIR", str(tmp_path / "noshared"))
    monkeypatch.setenv("GUANJIA_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["models", "fetch", FIRE])
    assert result.exit_code == 1
    assert f"place {FIRE}.onnx" in result.output and str(tmp_path / "cache" / "models") in result.output


def test_registry_file_is_in_the_repo():
    assert REGISTRY_FILE.is_file()


def test_intact_file_that_is_not_onnx_gives_one_line_error(tmp_path):
    import hashlib

    import yaml

    from detectors.registry import REGISTRY_FILE as real

    blob = b"this is not an onnx model" * 10
    (tmp_path / "junk.onnx").write_bytes(blob)
    entry = yaml.safe_load(real.read_text())["models"][2] | {
        "name": "junk", "file": "junk.onnx", "sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    registry_file = tmp_path / "models.yaml"
    registry_file.write_text(yaml.safe_dump({"models": [entry]}))
    reg = ModelRegistry.load(registry_file, search_dirs=[tmp_path])
    with pytest.raises(ModelError, match="model junk: onnxruntime cannot load it") as err:
        Runtime().model(reg, "junk")
    assert "\n" not in str(err.value)


def test_bad_registry_entry_names_file_and_key(tmp_path):
    registry_file = tmp_path / "models.yaml"
    registry_file.write_text("models:\n  - name: x\n    file: x.onnx\n")
    with pytest.raises(ModelError, match=r"models.yaml: models\[0\]\.sha256: Field required"):
        ModelRegistry.load(registry_file)
