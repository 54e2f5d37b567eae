"""A function's environment, read once at cold start into a validated model.

Each field ``name`` is read from the variable ``BERTH_<NAME>``. infra/ builds a function's
environment with ``Model.environment(name=value, ...)`` so both sides use the same names and
a typo fails synth instead of a cold start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

PREFIX = "BERTH_"


def env_name(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def _split(value: Any) -> Any:
    return [part for part in value.split(",") if part] if isinstance(value, str) else value


Ids = Annotated[list[str], BeforeValidator(_split)]
"""A list of ids (subnets, security groups) in one comma-separated variable."""


class ConfigurationError(RuntimeError):
    """The function was deployed with a missing or malformed environment variable."""


class EnvModel(BaseModel):
    """JSON-valued variables use ``pydantic.Json[...]`` field types; "true"/"false" and
    numbers parse as usual."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        source = os.environ if environ is None else environ
        data = {
            name: source[env_name(name)] for name in cls.model_fields if env_name(name) in source
        }
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(f"{cls.__name__}: {exc}") from None

    @classmethod
    def environment(cls, **values: Any) -> dict[str, str]:
        """The environment variables that configure this model (for infra/)."""
        unknown = set(values) - set(cls.model_fields)
        if unknown:
            raise TypeError(f"{cls.__name__} has no settings {sorted(unknown)}")
        rendered: dict[str, str] = {}
        for name, value in values.items():
            if value is None:
                continue
            if isinstance(value, bool):
                rendered[env_name(name)] = "true" if value else "false"
            elif isinstance(value, list | tuple):
                rendered[env_name(name)] = ",".join(str(part) for part in value)
            else:
                rendered[env_name(name)] = str(value)
        return rendered
