"""Dioptra's example artifact task, unchanged but for its import."""

from pathlib import Path
from typing import Any

from aliquot import ArtifactTask


class StringArtifactTask(ArtifactTask):
    @staticmethod
    def serialize(working_dir: Path, name: str, contents: str, type: str = "txt", **kwargs) -> Path:
        result = (working_dir / name).with_suffix("." + type)
        result.write_text(contents, encoding="UTF-8", newline="")
        return result

    @staticmethod
    def deserialize(working_dir: Path, path: str, **kwargs) -> str:
        return Path(working_dir, path).read_text()

    @staticmethod
    def validation() -> dict[str, Any] | None:
        return {"type": {"type": "string"}}
