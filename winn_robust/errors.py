"""The exceptions the CLI turns into one line: bad user input (exit 2) and faults of the machine (exit 1)."""

import errno


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


class MachineError(Exception):
    """A fault of the machine, not of the input (disk full, read-only file system, a lost lock):
    the CLI prints its one line, naming the file, the cause and what to do, and exits 1."""


_CAUSES = {
    errno.ENOSPC: ("the disk is full", "free space there (or choose another --out) and run the same command again"),
    errno.EDQUOT: ("the disk quota is used up", "free space there (or choose another --out) and run the same command again"),
    errno.EROFS: ("the file system is mounted read-only", "remount it read-write or choose another --out"),
    errno.EPERM: ("the operation is not permitted (an immutable or append-only file: see lsattr)",
                  "clear the flag (chattr -i / -a) or choose another --out"),
    errno.EACCES: ("permission denied", "give this user write permission there or choose another --out"),
    errno.ENOLCK: ("the file system does not support locks (an NFS mount without its lock daemon?)",
                   "write to a local disk or enable locking on that mount"),
    errno.EFBIG: ("the file grew beyond the allowed size (ulimit -f?)", "raise the limit and run the same command again"),
    errno.EIO: ("an input/output error of the disk", "check the disk (dmesg) and run the same command again"),
    errno.ENOENT: ("it disappeared while being written (deleted by another process?)",
                   "make sure nothing else writes there and run the same command again"),
}


def fault_line(exc: OSError, path: object = None, doing: str = "write") -> str:
    """One line for a file-system fault: the file, the cause and what to do."""
    where = path if path is not None else (exc.filename or "a file")
    cause, advice = _CAUSES.get(exc.errno or 0, (exc.strerror or str(exc), "check the disk and run the same command again"))
    return f"cannot {doing} {where}: {cause} [{errno.errorcode.get(exc.errno or 0, 'OSError')}]; {advice}"


def is_fault(exc: BaseException) -> bool:
    """An OSError the machine caused (as opposed to a bug), worth one line rather than a traceback."""
    return isinstance(exc, OSError) and exc.errno in _CAUSES
