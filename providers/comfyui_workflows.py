"""The operator's ComfyUI pool as the models file declares it: the servers, and each workflow
template (an API-format graph, and which node inputs take our parameters), each of which becomes
a `comfyui/<workflow>` model. Also filling a template for one job, and reading a finished
prompt's output files from its history.

    comfyui:
      servers:
        - url: http://gpu-1:8188
          slots: 1                      # jobs at once (default 1: ComfyUI runs one prompt)
        - http://gpu-2:8188
      health_seconds: 10                # how long a /system_stats answer is trusted
      workflows:
        sdxl:                           # the model comfyui/sdxl
          type: image
          graph: sdxl-api.json          # beside the models file, or the graph itself
          inputs: {prompt: 6.text, negative_prompt: 7.text, seed: 3.seed, steps: 3.steps,
                   width: 5.width, height: 5.height, n: 5.batch_size}
          sizes: [1024x1024, 1152x896]
          max_n: 4
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from providers.base import GenerationRequest, MediaType
from providers.comfyui_pool import ComfyServer
from providers.registry import CatalogError, ModelSpec, model_from_config

ROLES = ("prompt", "negative_prompt", "seed", "steps", "width", "height", "n", "image")
"""Our parameters a workflow may map onto node inputs; video workflows also `frames` (seconds
times the fps) and `fps`."""
VIDEO_ROLES = ("frames", "fps")
OUTPUT_KINDS = ("images", "gifs", "videos", "audio")
"""Where ComfyUI's output nodes list their files in a history entry."""
WORKFLOW_ONLY = ("graph", "inputs", "output_node")
"""A workflow's fields that are not its catalog model's."""


@dataclass(frozen=True, slots=True)
class ComfyWorkflow:
    name: str
    type: MediaType
    graph: Mapping[str, Any]
    """The API-format graph: node id -> {"class_type", "inputs"}."""
    inputs: Mapping[str, tuple[str, str]]
    """Our parameter -> (node id, that node's input)."""
    output_node: str | None = None
    """Take outputs from this node only (else from every output node, in graph order)."""


@dataclass(frozen=True, slots=True)
class ComfyConfig:
    servers: tuple[ComfyServer, ...] = ()
    workflows: Mapping[str, ComfyWorkflow] = field(default_factory=dict)
    models: tuple[ModelSpec, ...] = ()
    health_seconds: float = 10.0


def _servers(raw: Any) -> tuple[ComfyServer, ...]:
    if not isinstance(raw, list) or not raw:
        raise CatalogError("comfyui: servers must list at least one server")
    servers = []
    for entry in raw:
        item = {"url": entry} if isinstance(entry, str) else entry
        if not isinstance(item, dict) or not str(item.get("url", "")).startswith("http"):
            raise CatalogError(f"comfyui: a server needs an http(s) url, got {entry!r}")
        slots = item.get("slots", 1)
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise CatalogError(f"comfyui: server {item['url']}: slots must be 1 or more")
        servers.append(ComfyServer(str(item["url"]).rstrip("/"), slots))
    if len({s.url for s in servers}) != len(servers):
        raise CatalogError("comfyui: a server is listed twice")
    return tuple(servers)


def _graph(name: str, raw: Any, base: Path) -> dict[str, Any]:
    if isinstance(raw, str):
        path = base / raw
        try:
            raw = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise CatalogError(f"comfyui workflow {name!r}: graph {path} cannot be read") from exc
    if not isinstance(raw, dict) or not raw:
        raise CatalogError(f"comfyui workflow {name!r}: graph must be an API-format graph")
    for node_id, node in raw.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            raise CatalogError(
                f"comfyui workflow {name!r}: node {node_id} is not in API format (save the "
                "workflow with 'Export (API)')"
            )
    return {str(k): v for k, v in raw.items()}


def _inputs(
    name: str, kind: MediaType, raw: Any, graph: Mapping[str, Any]
) -> dict[str, tuple[str, str]]:
    if not isinstance(raw, dict) or "prompt" not in raw:
        raise CatalogError(f"comfyui workflow {name!r}: inputs must map at least prompt")
    roles = ROLES + (VIDEO_ROLES if kind == "video" else ())
    mapped = {}
    for role, target in raw.items():
        if role not in roles:
            raise CatalogError(
                f"comfyui workflow {name!r}: input {role!r} is not one of {', '.join(roles)}"
            )
        node, _, field_name = str(target).partition(".")
        if node not in graph or field_name not in graph[node]["inputs"]:
            raise CatalogError(
                f"comfyui workflow {name!r}: {role} maps to {target!r}, which the graph lacks"
            )
        mapped[str(role)] = (node, field_name)
    return mapped


def comfyui_from_config(raw: Any, base: Path) -> ComfyConfig:
    """The models file's `comfyui` section; CatalogError names what is wrong."""
    if not isinstance(raw, dict) or set(raw) - {"servers", "workflows", "health_seconds"}:
        raise CatalogError("comfyui: expected keys servers, workflows and health_seconds")
    servers = _servers(raw.get("servers"))
    health = raw.get("health_seconds", 10.0)
    if isinstance(health, bool) or not isinstance(health, int | float) or health <= 0:
        raise CatalogError("comfyui: health_seconds must be a positive number")
    workflows: dict[str, ComfyWorkflow] = {}
    models = []
    for name, entry in (raw.get("workflows") or {}).items():
        name = str(name)
        if not isinstance(entry, dict):
            raise CatalogError(f"comfyui workflow {name!r}: expected a mapping")
        if entry.get("type") not in ("image", "video"):
            raise CatalogError(f"comfyui workflow {name!r}: type must be image or video")
        kind = MediaType(entry["type"])
        graph = _graph(name, entry.get("graph"), base)
        inputs = _inputs(name, kind, entry.get("inputs"), graph)
        output_node = entry.get("output_node")
        if output_node is not None and str(output_node) not in graph:
            raise CatalogError(f"comfyui workflow {name!r}: output_node {output_node} is absent")
        spec_fields = {k: v for k, v in entry.items() if k not in WORKFLOW_ONLY}
        spec_fields.update(
            provider="comfyui",
            provider_model=name,
            edits="image" in inputs,
            negative_prompt="negative_prompt" in inputs,
            max_steps=entry.get("max_steps", 150) if "steps" in inputs else 0,
        )
        spec = model_from_config(f"comfyui/{name}", spec_fields)
        if spec.max_n > 1 and "n" not in inputs:
            raise CatalogError(f"comfyui workflow {name!r}: max_n above 1 needs an n input")
        if "frames" in inputs and not spec.fps:
            raise CatalogError(f"comfyui workflow {name!r}: frames needs the fps it runs at")
        workflows[name] = ComfyWorkflow(
            name, kind, graph, inputs, None if output_node is None else str(output_node)
        )
        models.append(spec)
    return ComfyConfig(servers, workflows, tuple(models), float(health))


def job_seed(job_id: str) -> int:
    """The seed of a job that named none: its own (ComfyUI caches a graph it has run, so the
    same seed twice would finish "instantly" with the old image), yet the same on its retries."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:6], "big")


def fill(
    workflow: ComfyWorkflow, request: GenerationRequest, image_name: str | None
) -> dict[str, Any]:
    """The workflow's graph with this job's parameters in their node inputs."""
    graph = copy.deepcopy(dict(workflow.graph))
    p = request.params
    width, _, height = str(p["size"]).partition("x")
    values: dict[str, Any] = {
        "prompt": p["prompt"],
        "negative_prompt": p.get("negative_prompt"),
        "seed": p["seed"] if p.get("seed") is not None else job_seed(request.job_id),
        "steps": p.get("steps"),
        "width": int(width),
        "height": int(height),
        "n": p.get("n", 1),
        "image": image_name,
    }
    if request.type == "video":
        values["fps"] = p.get("fps")
        values["frames"] = int(p["seconds"]) * int(p["fps"]) if p.get("fps") else None
    for role, (node, name) in workflow.inputs.items():
        if values.get(role) is not None:
            graph[node]["inputs"][name] = values[role]
    return graph


def output_files(workflow: ComfyWorkflow, entry: Mapping[str, Any]) -> list[dict[str, str]]:
    """A finished prompt's saved files (`{filename, subfolder, type}`), previews left out: from
    the workflow's output node, or every output node in graph order."""
    outputs = entry.get("outputs") or {}
    order = list(workflow.graph)
    nodes = (
        [workflow.output_node]
        if workflow.output_node
        else sorted(outputs, key=lambda n: order.index(n) if n in order else len(order))
    )
    files = []
    for node in nodes:
        found = outputs.get(node) or {}
        for kind in OUTPUT_KINDS:
            for item in found.get(kind) or []:
                if isinstance(item, dict) and item.get("filename") and item.get("type") == "output":
                    files.append(
                        {
                            "filename": str(item["filename"]),
                            "subfolder": str(item.get("subfolder") or ""),
                            "type": "output",
                        }
                    )
    return files
