"""Domain errors: what a user can cause, with a message fit to show them."""


class DomainError(Exception):
    """A rule of the domain refused an operation; `str(error)` is shown to the user."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    """The thing asked for does not exist (or belongs to another shop)."""

    status_code = 404


class Conflict(DomainError):
    """The operation clashes with existing data (a taken slug, an e-mail already registered)."""

    status_code = 409


class PermissionDenied(DomainError):
    """The current user may not do this."""

    status_code = 403
