"""A secret given as a file (`*_FILE` settings): read once while settings validate; the
path is what `config` and dumps show, the value never is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, SecretStr

__all__ = ["SecretFile", "SecretFileSetting"]

# A secret file is read once, while settings validate; more than this is not a secret.
_SECRET_FILE_MAX = 64 * 1024


@dataclass(frozen=True)
class SecretFile:
    """An operator's `*_file` setting: where it was, and what it held (read once)."""

    path: Path
    value: SecretStr


def _read_secret_file(value: Any) -> Any:
    if value is None or isinstance(value, SecretFile):
        return value
    if not isinstance(value, str | Path):
        # The environment's value read as JSON (`{}`, `[1]`): not a path.
        raise ValueError("must be the path of a file holding the secret")
    path = Path(value)
    try:
        with path.open("rb") as handle:
            data = handle.read(_SECRET_FILE_MAX + 1)
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror}") from None
    if len(data) > _SECRET_FILE_MAX:
        raise ValueError(f"{path} is larger than 64 KiB; point it at the file holding the secret")
    try:
        text = data.decode().strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    return SecretFile(path, SecretStr(text))


# The path is what shows (dumps, `config`); the value never does.
SecretFileSetting = Annotated[
    SecretFile | None,
    BeforeValidator(_read_secret_file),
    PlainSerializer(lambda file: None if file is None else str(file.path), return_type=str | None),
]
