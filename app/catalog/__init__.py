"""The model catalog: routing names and aliases to provider models, and /v1/models and
/admin/models.
"""
