"""One exception type for bad user input, so the CLI can print one line and exit 2."""


class UserError(Exception):
    """Input the user can fix: the message names what was wrong and what to do."""
