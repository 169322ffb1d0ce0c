"""Strict configs, shared by every package: the project's one error, one-sentence validation messages, and
YAML loading by name, path or mapping.

    space = load_named("hybrid-ratio", SearchSpace, SPACE_DIR, "search space", "name, base, dimensions")
    data = parse_mapping(text, "study spec ratio.yaml", "name, kind, space, ...")
    text = read_text(path, "study spec")      # bounded, UTF-8, or one sentence

Every config is bounded before it is parsed: a file or text over `MAX_CONFIG_BYTES` is refused, YAML
aliases (`*name`, which a few hundred bytes can nest into gigabytes) are refused, and a binary or
non-UTF-8 file is one sentence. A message about a file names the file and the key, never the file's
values (a path given by mistake, or by someone probing a server, must not echo what the file holds).

Library code raises `ConfigError` with a sentence a user can act on; only the `nas` command line turns it
into an exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "MAX_CONFIG_BYTES",
    "ConfigError",
    "Strict",
    "explain_validation_error",
    "load_named",
    "load_yaml",
    "names_in",
    "parse_mapping",
    "read_text",
    "yaml_problem",
]

# the largest spec, space, profile or architecture accepted (the bundled ones are under 4 KB)
MAX_CONFIG_BYTES = 256 * 1024


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


def _shown(value: Any, quote: bool) -> str:
    """A bad value as the message shows it: short scalars quoted, anything else (or everything from a file,
    `quote=False`) by its kind only."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    text = repr(value)
    if quote and len(text) <= 40 and "\n" not in str(value):
        return text
    return f"a text of {len(value)} characters" if isinstance(value, str) else f"a {type(value).__name__}"


def explain_validation_error(err: ValidationError, model: type[BaseModel], what: str = "", *,
                             quote: bool = True) -> str:
    """One sentence for a pydantic error: the field, what is wrong, what is allowed. `quote=False` for input
    read from a file: the message then names the key and never repeats a value."""
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
        msg = f"'{where}' is {_shown(e['input'], quote)}; {e['msg'].lower()}"
    else:
        msg = f"'{where}' is {_shown(e['input'], quote)}: {e['msg'][0].lower()}{e['msg'][1:]}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return prefix + msg


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML parser's complaint and where it is: `expected ':' at line 3, column 7`."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


# ----- loading ------------------------------------------------------------------------------------
class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases: `*name` is refused where it appears (anchors alone are harmless)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not accepted; write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def _too_big(where: str, size: int) -> ConfigError:
    return ConfigError(
        f"{where} is {size / 1024:,.0f} KB, over the limit of {MAX_CONFIG_BYTES // 1024} KB for a config; "
        "is it the right file?"
    )


def read_text(path: str | Path, what: str) -> str:
    """A config file's text: at most MAX_CONFIG_BYTES, UTF-8 and not binary; ConfigError in one sentence."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read the {what} {path}: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        try:
            size = path.stat().st_size
        except OSError:
            size = len(data)
        raise _too_big(f"the {what} {path}", max(size, len(data)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise ConfigError(f"the {what} {path} is not UTF-8 text (a binary file?); give the YAML file instead")
    return text


def load_yaml(text: str, where: str) -> Any:
    """YAML text, bounded (MAX_CONFIG_BYTES, no aliases); ConfigError naming `where` and the line otherwise."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_CONFIG_BYTES:
        raise _too_big(where, size)
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where} is not valid YAML{at}: {getattr(e, 'problem', None) or type(e).__name__}") from None
    except RecursionError:  # thousands of nested brackets
        raise ConfigError(f"{where} nests too deeply to be a config") from None


def names_in(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def parse_mapping(text: str, where: str, keys_hint: str) -> dict[str, Any]:
    """YAML text that must hold a mapping; `where` names it in errors ("profile gpu.yaml")."""
    data = load_yaml(text, where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys ({keys_hint})")
    return data


def load_named(spec: str | Path | dict | M, model: type[M], folder: Path, what: str, keys_hint: str) -> M:
    """A config of `model`: an instance as is, a mapping, a name of `folder/<name>.yaml`, or a YAML path."""
    if isinstance(spec, model):
        return spec
    quote = True
    if isinstance(spec, dict):
        data, where = spec, f"the inline {what}"
    else:
        path = Path(spec)
        if not path.suffix:
            path = folder / f"{spec}.yaml"
            if not path.exists():
                raise ConfigError(f"unknown {what} {str(spec)!r}; choose one of {', '.join(names_in(folder))} "
                                  "or give a YAML path")
        text = read_text(path, what)
        where = f"{what} {path.name}"
        data = parse_mapping(text, where, keys_hint)
        quote = path.parent == folder  # a bundled file's values may be quoted; a path given by a user's not
    if not isinstance(data, dict):
        raise ConfigError(f"the {what} must be a mapping of keys ({keys_hint})")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(explain_validation_error(e, model, where, quote=quote)) from None
