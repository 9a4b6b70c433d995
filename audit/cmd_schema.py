"""`onegc-audit schema verdict|result`: the JSON Schema of what verify and scoring publish."""

import json
from typing import Annotated

import typer

from onegc.evidence.errors import OnegcError
from onegc.evidence.models import SCHEMAS


def schema(
    name: Annotated[str, typer.Argument(help=" or ".join(SCHEMAS) + ".")],
    as_json: Annotated[bool, typer.Option("--json", help="Accepted for uniformity: the schema is JSON.")] = False,
) -> None:
    """Print the JSON Schema of a verdict (`verify --json`, the verdict attestation) or of an
    official result (result.json)."""
    model = SCHEMAS.get(name)
    if model is None:
        raise OnegcError(f"unknown schema {name!r}; choose {' or '.join(SCHEMAS)}")
    print(json.dumps(model.model_json_schema(), indent=2))
