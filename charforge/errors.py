"""One exception hierarchy, so every front end (CLI, tools, HTTP) can map failures to one clear message."""


class CharforgeError(Exception):
    """Base of every error charforge raises on purpose; its message is meant for the user."""

    code = "error"


class InvalidInput(CharforgeError, ValueError):
    """The caller passed something malformed (bad name, bad size, unknown option)."""

    code = "invalid_input"


class NotFound(CharforgeError, LookupError):
    """A named thing (character, file, model) does not exist."""

    code = "not_found"


class AlreadyExists(CharforgeError):
    """Creating something whose name is already taken."""

    code = "already_exists"


class ConflictError(CharforgeError):
    """Another writer changed the record since it was read (optimistic concurrency)."""

    code = "conflict"


class IntegrityError(CharforgeError):
    """Stored data failed its checksum or does not match what references it."""

    code = "integrity"


class ModelLoadError(CharforgeError):
    """A model reference could not be resolved or loaded (offline hub, missing folder, pickle weights)."""

    code = "model_load"


class StaleIdentity(CharforgeError):
    """A character's stored identity was made with a different model than the one in use."""

    code = "stale_identity"


class StorageError(CharforgeError):
    """The workspace's database or folder cannot be used (not a database, read-only, disk full, missing)."""

    code = "storage"
