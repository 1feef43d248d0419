"""The exceptions abe reports to users as a single line."""

import sys


class ConfigError(ValueError):
    """Bad user input: the message names the key, the value and what is allowed."""


def first_line(ex: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    text = str(ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


class TrainingDiverged(FloatingPointError):
    """A loss or a network weight became NaN or infinite."""


class TrialEndedElsewhere(RuntimeError):
    """A sweep's job whose trial was already ended in the study by another process: its own
    sweeper when it died, or another sweeper that failed it as abandoned. The job stops,
    its runs KILLED with the reason."""


class SweepEnded(SystemExit):
    """A sweep that cannot go on, said in one line on stderr as it is raised (unless its
    job said it already): the process exits 1 and the sweep's MLflow parent run ends
    FAILED with the reason."""

    def __init__(self, reason: str, said: bool = False) -> None:
        super().__init__(1)
        self.reason = reason
        if not said:
            print(f"error: {reason}", file=sys.stderr)

    def __str__(self) -> str:
        return self.reason


class NoTrialFinished(SweepEnded):
    """A sweep ended without one finished trial."""
