"""Where a config comes from, and how a mistake in it is located: key paths, problems, files.

Shared by ``config`` and the builders of each section (``targets``, heartbeats) so that every
error names the file, the line and the key path the same way.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigProblem", "KeyPath", "Source", "format_path"]

KeyPath = tuple[str | int, ...]


class ConfigProblem(Exception):
    """One mistake at one place in the config, raised while building the typed config."""

    def __init__(self, at: KeyPath, message: str) -> None:
        super().__init__(message)
        self.at = at
        self.message = message


def format_path(at: KeyPath) -> str:
    """``("targets", 3, "expect", "status")`` -> ``targets[3].expect.status``."""
    text = ""
    for part in at:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


class Source:
    """Where the config came from: resolves relative paths and reads secret files for builders."""

    def __init__(self, name: str, base_dir: Path) -> None:
        self.name = name
        self.base_dir = base_dir

    def path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    def read_text(self, value: str, at: KeyPath) -> str:
        """The content of the file at ``value``; a secret file's trailing newline is dropped."""
        path = self.path(value)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigProblem(at, f"cannot read file {str(path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigProblem(at, f"file {str(path)!r} is not UTF-8 text") from None
