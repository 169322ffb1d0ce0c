"""Loading strict configs from YAML by name, path or mapping, with one-sentence errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from search_spaces.arch import ConfigError, explain_validation_error

__all__ = ["load_named", "names_in", "parse_mapping"]

M = TypeVar("M", bound=BaseModel)


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
