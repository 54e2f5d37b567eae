"""The document function's environment: what of the deployment the document states (the
profiles and jobs a caller may name, the longest session, the largest file)."""

from __future__ import annotations

from pydantic import Field

from shared.config import EnvModel, Ids


class OpenApiConfig(EnvModel):
    profiles: Ids
    jobs: Ids
    max_ttl_seconds: int = Field(ge=1)
    max_file_bytes: int = Field(ge=1)
