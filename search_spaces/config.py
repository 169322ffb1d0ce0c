"""Strict configs, shared by every package: the project's one error, one-sentence validation messages, and
YAML loading by name, path or mapping.

    space = load_named("hybrid-ratio", SearchSpace, SPACE_DIR, "search space", "name, base, dimensions")
    data = parse_mapping(text, "study spec ratio.yaml", "name, kind, space, ...")

Library code raises `ConfigError` with a sentence a user can act on; only the `nas` command line turns it
into an exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "ConfigError",
    "Strict",
    "explain_validation_error",
    "load_named",
    "names_in",
    "parse_mapping",
    "yaml_problem",
]


class ConfigError(ValueError):
    """A configuration a user wrote that cannot be used; the message is one sentence saying why."""


class Strict(BaseModel):
    """A frozen config that rejects unknown keys (a misspelt key is an error, never ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


# ----- messages -----------------------------------------------------------------------------------
def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at `loc` (for listing its allowed keys)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = [t for t in getattr(field.annotation, "__args__", (field.annotation,)) if isinstance(t, type)]
        nested = [t for t in inner if issubclass(t, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def explain_validation_error(err: ValidationError, model: type[BaseModel], what: str = "") -> str:
    """One sentence for a pydantic error: the field, what is wrong, what is allowed."""
    errors = err.errors()
    # a misspelt key explains the "missing" error of the key it meant: report it first
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    where = ".".join(str(p) for p in loc)
    prefix = f"{what}: " if what else ""
    kind = e["type"]
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        allowed = ", ".join(owner.model_fields) if owner else ""
        msg = f"unknown key '{where}'" + (f"; allowed keys here are {allowed}" if allowed else "")
    elif kind == "missing":
        msg = f"'{where}' is required but missing"
    elif kind in ("value_error", "assertion_error"):
        cause = e.get("ctx", {}).get("error")
        msg = str(cause) if cause is not None else e["msg"]
        if where and where.split(".")[-1] not in msg:
            msg = f"{where}: {msg}"
    elif kind == "literal_error":
        msg = f"'{where}' is {e['input']!r}; {e['msg'].lower()}"
    else:
        msg = f"'{where}' is {e['input']!r}: {e['msg'][0].lower()}{e['msg'][1:]}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return prefix + msg


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML parser's complaint and where it is: `expected ':' at line 3, column 7`."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


# ----- loading ------------------------------------------------------------------------------------
def names_in(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def parse_mapping(text: str, where: str, keys_hint: str) -> dict[str, Any]:
    """YAML text that must hold a mapping; `where` names it in errors ("profile gpu.yaml")."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys ({keys_hint})")
    return data


def load_named(spec: str | Path | dict | M, model: type[M], folder: Path, what: str, keys_hint: str) -> M:
    """A config of `model`: an instance as is, a mapping, a name of `folder/<name>.yaml`, or a YAML path."""
    if isinstance(spec, model):
        return spec
    if isinstance(spec, dict):
        data, where = spec, f"the inline {what}"
    else:
        path = Path(spec)
        if not path.suffix:
            path = folder / f"{spec}.yaml"
            if not path.exists():
                raise ConfigError(f"unknown {what} {str(spec)!r}; choose one of {', '.join(names_in(folder))} "
                                  "or give a YAML path")
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read the {what} {path}: {e.strerror}") from None
        where = f"{what} {path.name}"
        data = parse_mapping(text, where, keys_hint)
    if not isinstance(data, dict):
        raise ConfigError(f"the {what} must be a mapping of keys ({keys_hint})")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(explain_validation_error(e, model, where)) from None
