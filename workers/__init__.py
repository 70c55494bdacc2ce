"""arq workers: the generation task and the settings that run it."""
