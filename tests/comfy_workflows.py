"""ComfyUI workflow templates (API format) and the models-file section that lists them, for the
tests of the ComfyUI pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


def _sdxl(ckpt: str = "sd_xl_base_1.0.safetensors", edit: bool = False) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 0,
                "steps": 8,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "mg", "images": ["8", 0]}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    if edit:
        del graph["5"]
        graph["11"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
        graph["12"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["11", 0], "vae": ["4", 2]}}
        graph["3"]["inputs"]["latent_image"] = ["12", 0]
    return graph


def _video() -> dict[str, Any]:
    graph = _sdxl("hunyuan_video_t2v_720p.safetensors")
    graph["5"] = {
        "class_type": "EmptyHunyuanLatentVideo",
        "inputs": {"width": 848, "height": 480, "length": 25, "batch_size": 1},
    }
    del graph["9"], graph["10"]
    graph["9"] = {"class_type": "VHS_VideoCombine", "inputs": {"images": ["8", 0], "frame_rate": 8}}
    return graph


IMAGE_INPUTS = {
    "prompt": "6.text",
    "negative_prompt": "7.text",
    "seed": "3.seed",
    "steps": "3.steps",
    "width": "5.width",
    "height": "5.height",
    "n": "5.batch_size",
}


def comfyui_section(
    urls: Sequence[str], *, slots: int = 1, health_seconds: float = 0.2
) -> dict[str, Any]:
    """Servers at `urls`; workflows `sdxl` (images), `sdxl-edit` (an input image), `hunyuan`
    (video) and `broken` (a checkpoint no server has)."""
    return {
        "servers": [{"url": url, "slots": slots} for url in urls],
        "health_seconds": health_seconds,
        "workflows": {
            "sdxl": {
                "type": "image",
                "graph": _sdxl(),
                "inputs": IMAGE_INPUTS,
                "sizes": ["1024x1024", "1152x896", "896x1152"],
                "max_n": 4,
                "max_steps": 40,
            },
            "sdxl-edit": {
                "type": "image",
                "graph": _sdxl(edit=True),
                "inputs": {"prompt": "6.text", "seed": "3.seed", "image": "11.image"},
                "sizes": ["1024x1024"],
            },
            "hunyuan": {
                "type": "video",
                "graph": _video(),
                "inputs": {
                    "prompt": "6.text",
                    "seed": "3.seed",
                    "width": "5.width",
                    "height": "5.height",
                    "frames": "5.length",
                    "fps": "9.frame_rate",
                },
                "sizes": ["848x480", "480x848"],
                "max_seconds": 5,
                "fps": [8, 24],
            },
            "broken": {
                "type": "image",
                "graph": _sdxl("missing-model.safetensors"),
                "inputs": {"prompt": "6.text"},
                "sizes": ["1024x1024"],
            },
        },
    }


def models_file_text(urls: Sequence[str], **options: Any) -> str:
    return yaml.safe_dump({"comfyui": comfyui_section(urls, **options)})
