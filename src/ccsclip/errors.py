"""The project's exception types.

Library code raises these with messages that name the bad value and the valid choices;
the CLI maps them to exit code 2, HTTP to 4xx (503 for UnavailableError) and gRPC to
INVALID_ARGUMENT / NOT_FOUND / ALREADY_EXISTS / FAILED_PRECONDITION / UNAVAILABLE.
"""


class CcsclipError(Exception):
    """Base class: something the user can fix (bad input, wrong file, unsupported model)."""


class InvalidInputError(CcsclipError, ValueError):
    """A value, file or argument is malformed."""


class NotFoundError(CcsclipError, LookupError):
    """A named thing (model, profile, head, gallery, file) does not exist."""


class UnsupportedModelError(CcsclipError):
    """The architecture cannot be decomposed or pruned exactly."""


class IntegrityError(CcsclipError):
    """An artefact's hash or identity does not match what the next stage expects."""


class ConflictError(CcsclipError):
    """The request conflicts with the current state (a name already taken, a read-only target)."""


class ReadOnlyError(ConflictError):
    """A write to something served read-only (a gallery shipped in a bundle or Bento)."""


class UnavailableError(CcsclipError):
    """A dependency (the Milvus server) cannot be reached right now; retrying later may work."""
