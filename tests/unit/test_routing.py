"""The catalog, the models file and input validation for upstream models (no servers needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.catalog.routing import check_targets
from app.jobs.inputs import validate_input
from app.platform.errors import InvalidRequestError
from app.platform.models_file import load_models_file
from app.platform.settings import SettingsError
from providers.registry import build_catalog


def test_catalog_has_only_configured_providers_and_bare_openai_names() -> None:
    local = build_catalog(["local"])
    assert local.get("dall-e-3") is None and local.get("local-image") is not None
    everything = build_catalog(["local", "openai", "minimax", "replicate"])
    spec = everything.get("dall-e-3")
    assert spec is not None and spec.name == "openai/dall-e-3"
    assert everything.get("minimax/hailuo-02") is everything.get("minimax/MiniMax-Hailuo-02")


def test_model_limits_are_enforced() -> None:
    catalog = build_catalog(["local", "openai", "minimax"])
    dalle3 = catalog.get("dall-e-3")
    assert dalle3 is not None
    with pytest.raises(InvalidRequestError) as too_many:
        validate_input(dalle3, {"prompt": "x", "n": 2})
    assert too_many.value.param == "input.n"
    with pytest.raises(InvalidRequestError) as bad_quality:
        validate_input(dalle3, {"prompt": "x", "quality": "ultra"})
    assert bad_quality.value.param == "input.quality"
    sora = catalog.get("sora-2")
    assert sora is not None
    assert validate_input(sora, {"prompt": "x"})["seconds"] == 4
    with pytest.raises(InvalidRequestError) as bad_seconds:
        validate_input(sora, {"prompt": "x", "seconds": 5})
    assert bad_seconds.value.param == "input.seconds"
    hailuo = catalog.get("minimax/MiniMax-Hailuo-02")
    assert hailuo is not None
    assert validate_input(hailuo, {"prompt": "x"})["seconds"] == 6
    with pytest.raises(InvalidRequestError):
        validate_input(dalle3, {"prompt": "x", "image": {"media_id": "med_1"}})  # no edits


def test_alias_targets_must_exist_and_share_a_type() -> None:
    catalog = build_catalog(["local", "openai"])
    assert check_targets(catalog, "mine", ["dall-e-3", "local-image"]) == "image"
    with pytest.raises(InvalidRequestError) as mixed:
        check_targets(catalog, "mine", ["dall-e-3", "tts-1"])
    assert mixed.value.param == "targets"
    with pytest.raises(InvalidRequestError) as unknown:
        check_targets(catalog, "mine", ["local-image", "minimax/image-01"])
    assert unknown.value.param == "targets.1"
    with pytest.raises(InvalidRequestError):
        check_targets(catalog, "dall-e-3", ["local-image"])  # a model's own name


def test_models_file(tmp_path: Path) -> None:
    good = tmp_path / "models.yaml"
    good.write_text(
        "aliases:\n  a: local-image\n  b: [dall-e-3, local-image]\n"
        "models:\n  replicate/x/y:\n    type: image\n    provider: replicate\n"
        "    provider_model: x/y\n    sizes: [512x512]\n"
    )
    loaded = load_models_file(str(good))
    assert loaded.aliases == {"a": ("local-image",), "b": ("dall-e-3", "local-image")}
    assert loaded.models[0].sizes == ("512x512",)
    catalog = build_catalog(["replicate"], loaded.models)
    assert catalog.get("replicate/x/y") is not None

    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m:\n    type: image\n    provider: replicate\n")
    with pytest.raises(SettingsError, match="provider_model"):
        load_models_file(str(bad))
    with pytest.raises(SettingsError, match="cannot be read"):
        load_models_file(str(tmp_path / "missing.yaml"))


def test_every_models_file_example_in_the_docs_loads(tmp_path: Path) -> None:
    """The YAML examples operators copy from the README and docs/api.md are models files that
    load as they stand."""
    import re

    root = Path(__file__).resolve().parents[2]
    examples = [
        block
        for page in (root / "README.md", root / "docs" / "api.md")
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)
    ]
    assert any("provider: fal" in block for block in examples)
    assert any("comfyui:" in block for block in examples)
    for n, block in enumerate(examples):
        _write_graphs(block, tmp_path)
        path = tmp_path / f"example{n}.yaml"
        path.write_text(block)
        loaded = load_models_file(str(path))
        assert loaded.models or loaded.aliases or loaded.prices


def _write_graphs(block: str, folder: Path) -> None:
    """The exported graphs an example names, as far as it uses them: each node it maps, with
    the inputs it maps (the exports themselves are the operator's)."""
    import orjson
    import yaml

    for workflow in (
        ((yaml.safe_load(block) or {}).get("comfyui") or {}).get("workflows", {}).values()
    ):
        if not isinstance(workflow.get("graph"), str):
            continue
        graph: dict[str, dict[str, Any]] = {}
        for target in workflow["inputs"].values():
            node, _, name = target.partition(".")
            graph.setdefault(node, {"class_type": "Stub", "inputs": {}})["inputs"][name] = 0
        if workflow.get("output_node"):
            graph.setdefault(str(workflow["output_node"]), {"class_type": "Stub", "inputs": {}})
        (folder / workflow["graph"]).write_bytes(orjson.dumps(graph))
