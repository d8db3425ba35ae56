"""A Translation as files: one YAML file per Kubernetes object (`NN-kind-name.yaml`), report.md, report.json.

Pure: answers {file name: text}; the caller writes them. The numbers give the apply order,
so `kubectl apply -f DIR` (which reads files in name order) applies them in dependency order.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from migration.translate.model import SEVERITY_ORDER, Translation

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
_HEADINGS = {
    "action": "Act on these before applying",
    "warning": "Warnings: behaviour that differs from ECS",
    "info": "Notes: translated differently, nothing to do",
}


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order built, multi-line strings as `|` blocks (the SPC's `objects`)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(manifest: dict[str, Any]) -> str:
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def file_name(index: int, manifest: dict[str, Any]) -> str:
    return f"{index:02d}-{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


def manifest_files(translation: Translation) -> dict[str, str]:
    """{`NN-kind-name.yaml`: YAML}, in apply order."""
    return {file_name(i, m): to_yaml(m) for i, m in enumerate(translation.manifests, start=1)}


def render_files(translation: Translation) -> dict[str, str]:
    """Everything `translate ecs --out DIR` writes: the manifests, report.md and report.json."""
    files = manifest_files(translation)
    listing = list(files)
    files[REPORT_MD] = render_markdown(translation, listing)
    files[REPORT_JSON] = json.dumps(report_json(translation, listing), indent=2) + "\n"
    return files


def summary_line(translation: Translation) -> str:
    counts = translation.counts()
    return (
        f"{_count(len(translation.manifests), 'Kubernetes object')}; report: {_count(len(translation.report), 'item')} "
        f"({counts['action']} to act on, {_count(counts['warning'], 'warning')}, {_count(counts['info'], 'note')})"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def report_json(translation: Translation, files: list[str] | None = None) -> dict[str, Any]:
    files = files if files is not None else list(manifest_files(translation))
    return {
        "source": translation.source,
        "namespace": translation.namespace,
        "name": translation.name,
        "files": [
            {"file": f, "kind": m["kind"], "name": m["metadata"]["name"]}
            for f, m in zip(files, translation.manifests, strict=True)
        ],
        "counts": translation.counts(),
        "report": [item.model_dump() for item in translation.report],
        "secrets": [s.model_dump() for s in translation.secrets],
        "images": [i.model_dump() for i in translation.images],
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(translation: Translation, files: list[str] | None = None) -> str:
    files = files if files is not None else list(manifest_files(translation))
    lines = [
        f"# ECS -> Kubernetes: {translation.source}",
        "",
        f"Namespace `{translation.namespace}`, workload `{translation.name}`: {summary_line(translation)}.",
        "",
        "## Files, in apply order",
        "",
        "| file | kind | name |",
        "|---|---|---|",
    ]
    lines += [
        f"| {f} | {m['kind']} | {m['metadata']['name']} |" for f, m in zip(files, translation.manifests, strict=True)
    ]
    for severity in SEVERITY_ORDER:
        items = [i for i in translation.report if i.severity == severity]
        if not items:
            continue
        lines += [
            "",
            f"## {_HEADINGS[severity]} ({len(items)})",
            "",
            "| ECS field | on ECS | on Kubernetes |",
            "|---|---|---|",
        ]
        lines += [f"| `{_cell(i.field)}` | {_cell(i.ecs)} | {_cell(i.outcome)} |" for i in items]
    if translation.secrets:
        lines += [
            "",
            "## Key Vault secrets the workload reads (names only)",
            "",
            "| Key Vault secret | copied from | JSON key | read as |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {s.key_vault_secret} | {s.source_service}: {_cell(s.source)} | {s.json_key or ''} | "
            f"{', '.join(s.env)} |"
            for s in translation.secrets
        ]
    if translation.images:
        lines += ["", "## Images", "", "| container | on ECS | on AKS | pinned |", "|---|---|---|---|"]
        lines += [
            f"| {i.container} | {i.source} | {i.target} | {'digest' if i.pinned else 'tag only'} |"
            for i in translation.images
        ]
    return "\n".join(lines) + "\n"
