"""What every typed result file of a run shares (cxr.runs.results, cxr.runs.site_check_result): validated reading, from
the file or from the dict its producer built, and one writer.

Reading validates the JSON against the file's frozen dataclass (pydantic), so a missing or malformed field is a
RunError naming the file and the field.
"""

import functools
from pathlib import Path
from typing import ClassVar, Self

from pydantic import TypeAdapter, ValidationError

from cxr.errors import RunError
from cxr.files import read_json, write_json

Interval = tuple[float, float]  # a 95% interval, (low, high)


@functools.cache
def _adapter(cls) -> TypeAdapter:
    return TypeAdapter(cls)


class ResultFile:
    """What every result file shares: validated reading (from a file or from the producer's dict) and writing."""

    FILE: ClassVar[str]

    @classmethod
    def create(cls, raw: dict, path: Path) -> Self:
        """A producer's result, validated and written to `path`."""
        result = cls.from_dict(raw, path)
        result.write(path)
        return result

    @classmethod
    def from_dict(cls, raw: dict, source: Path | str) -> Self:
        try:
            return _adapter(cls).validate_python(cls._upgrade(dict(raw)))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "(top level)"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise RunError(f"{source}: field {where!r}: {error['msg']}{more}") from None

    @classmethod
    def _upgrade(cls, raw: dict) -> dict:
        """An older form of the file, in the current one (where a field changed its meaning)."""
        return raw

    @classmethod
    def read(cls, path: Path) -> Self:
        """The file at `path`, or this kind's file in the run folder `path`."""
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILE
        if not path.is_file():
            raise RunError(f"{path}: not found")
        return cls.from_dict(read_json(path), path)

    def to_dict(self) -> dict:
        return _adapter(type(self)).dump_python(self, by_alias=True)

    def write(self, path: Path) -> Path:
        """The one writer."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, self.to_dict())
        return path
