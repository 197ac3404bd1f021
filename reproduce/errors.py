"""One kind of error for everything a user can get wrong: the CLI prints it in one line, no traceback."""
import difflib
import re
import typing


class UserError(Exception):
    """Bad input (a param, a spec, a missing file): the message names what is wrong and what is allowed."""


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def explain(error, model, where: str = "") -> UserError:
    """Turn pydantic's ValidationError for `model` into one UserError naming each bad key and what is allowed."""
    lines = []
    for e in error.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(model, e["loc"][:-1])
            lines.append(f"unknown key '{key}'{did_you_mean(e['loc'][-1], allowed)}; allowed: "
                         + ", ".join(allowed))
        elif e["type"] == "missing":
            lines.append(f"missing required key '{key}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = "" if isinstance(got, dict) or got is None or str(got) in msg else f" (got {got!r})"
            if e["type"] == "literal_error":
                shown += did_you_mean(got, re.findall(r"'([^']*)'", e["ctx"]["expected"]))
            lines.append(f"{key}: {msg}{shown}" if key else msg)
    return UserError((f"invalid {where}: " if where else "") + "; ".join(lines))


def _fields_at(model, loc):
    """Field names of the (nested) pydantic model reached by following `loc` from `model`; a part of
    `loc` that is a key of a dict field (an experiment's or a recipe's name) leads to the dict's values."""
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None:
            args = typing.get_args(model)
            model = args[-1] if args else None
        else:
            field = fields.get(str(part))
            model = field.annotation if field else None
    return list(getattr(model, "model_fields", {}))
