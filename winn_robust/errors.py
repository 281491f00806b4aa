"""One exception type for bad user input, so the CLI can print one line and exit 2."""


class UserError(Exception):
    """Input the user can fix: the message names what was wrong and what to do. `mentions` are
    the settings its advice names by field, each written in backquotes (give `input_mean` and
    `input_std` together): the CLI rewrites each into its flag (--input-mean), the Python API
    keeps the names it was called with."""

    def __init__(self, message: str = "", mentions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.mentions = tuple(mentions)


class SettingError(UserError):
    """A setting out of range, named by its field (`batch_size must be positive, got 0`): the
    library speaks in field names, and the CLI alone rewrites the field into its flag.
    `method_setting`: the field is a training method's own setting (its `eps` is `--train-eps`
    on the command line, where `--eps` is the evaluation's)."""

    def __init__(self, field: str, message: str, mentions: tuple[str, ...] = (), method_setting: bool = False) -> None:
        self.field = field
        self.method_setting = method_setting
        super().__init__(f"{field}{'' if message.startswith(':') else ' '}{message}", mentions)
