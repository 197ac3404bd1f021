"""One kind of error for everything a user can get wrong: the CLI prints it in one line, no traceback."""
import difflib


class UserError(Exception):
    """Bad input (a param, a spec, a missing file): the message names what is wrong and what is allowed."""


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
