"""Where generated media lives: the MediaStore protocol and its memory and S3 implementations."""

from storage.base import MediaStore, ObjectInfo, StorageError, StorageNotFoundError

__all__ = ["MediaStore", "ObjectInfo", "StorageError", "StorageNotFoundError"]
