"""Domain errors: what a user can cause, with a message fit to show them."""


class DomainError(Exception):
    """A rule of the domain refused an operation; `str(error)` is shown to the user.

    Services raise it with a lazy message, `_l("No such order.")`, so the text is translated
    when it is shown — in the language of the page (or of the mail) showing it. The JSON API
    reads it under `force_locale("en")`."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self._message = message
        self.field = field

    @property
    def message(self) -> str:
        """The message in the current language (a plain `str`, ready to flash or store)."""
        return str(self._message)

    @message.setter
    def message(self, text: str) -> None:
        self._message = text

    def __str__(self) -> str:
        return self.message


class NotFound(DomainError):
    """The thing asked for does not exist (or belongs to another shop)."""

    status_code = 404


class Conflict(DomainError):
    """The operation clashes with existing data (a taken slug, an e-mail already registered)."""

    status_code = 409


class PermissionDenied(DomainError):
    """The current user may not do this."""

    status_code = 403
