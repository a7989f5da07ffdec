"""A file's identity: the SHA-256 of its bytes (a checkpoint's, config's or mask's, as sidecars record it)."""


def file_digest(path):
    """The SHA-256 of a file's bytes, hex (a checkpoint's or a config's identity in a sidecar)."""
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
