"""OpenAI-compatible endpoints (/v1/images, /v1/videos, /v1/audio/speech) over the jobs service."""
