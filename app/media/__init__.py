"""Media objects: signed links, uploads, storage usage and quotas, retention and purges, and
/v1/media.
"""
