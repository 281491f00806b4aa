"""One exception type for bad user input, so the CLI can print one line and exit 2."""


class UserError(Exception):
    """Input the user can fix: the message names what was wrong and what to do."""


class SettingError(UserError):
    """A setting out of range, named by its field (`batch_size must be positive, got 0`): the
    library speaks in field names, and the CLI alone rewrites the field into its flag."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}{'' if message.startswith(':') else ' '}{message}")
