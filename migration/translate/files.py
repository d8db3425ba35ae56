"""Reading the AWS CLI's JSON and writing a translation to a directory (the CLI's `--out`).

The only I/O of the package; the translation itself stays pure. `write_translation`
replaces what an earlier run wrote (the files its report.json lists) so that a manifest
the new translation no longer has does not linger for `kubectl apply -f DIR`; it never
touches other files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migration.translate.model import Translation, TranslationError
from migration.translate.render import REPORT_JSON, REPORT_MD, render_files


def load_json(path: str | Path, what: str) -> Any:
    """The parsed file; TranslationError naming the file (and the line of a syntax error) otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TranslationError([f"file not found: {path}"], source=what) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TranslationError([f"cannot read {path}: {exc}"], source=what) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TranslationError(
            [f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"], source=what
        ) from None


def _previous_files(out: Path) -> list[str]:
    try:
        listed = json.loads((out / REPORT_JSON).read_text(encoding="utf-8")).get("files") or []
        return [f["file"] for f in listed if isinstance(f, dict) and "/" not in str(f.get("file", "/"))]
    except (OSError, ValueError, AttributeError):
        return []


def write_translation(translation: Translation, out: str | Path) -> list[Path]:
    """Write the manifests, report.md and report.json into `out` (created); the paths written, in order."""
    out = Path(out)
    files = render_files(translation)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in set(_previous_files(out)) - set(files):
            (out / stale).unlink(missing_ok=True)
        written = []
        for name, text in files.items():
            path = out / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise TranslationError([f"--out {out}: cannot write: {exc}"], source="output") from None
    return written


__all__ = ["REPORT_JSON", "REPORT_MD", "load_json", "write_translation"]
