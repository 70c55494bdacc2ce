"""The HTTP shell: create_app(), request dependencies, the one error mapping, OpenAPI, health and
rendering.
"""
