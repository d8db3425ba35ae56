"""ECS (and later Amplify) -> Kubernetes manifests: pure translation, no SDK, no network.

    translate_ecs(task_definition, service, options) -> Translation
        task_definition / service: the JSON `aws ecs describe-task-definition` /
        `describe-services` print (wrapped or not); options: TranslateOptions.
    Translation.manifests   Kubernetes objects in apply order (plain dicts)
    Translation.report      every ECS field without a direct equivalent, and what was done
    Translation.secrets     the Key Vault secrets to copy from Secrets Manager (names only)
    Translation.images      what each container ran on ECS and runs on AKS
    render_files(t)         {"NN-kind-name.yaml": ..., "report.md": ..., "report.json": ...}

Bad input raises TranslationError (an InputError: exit 2) with one line per problem,
each naming the field path, e.g. `taskDefinition.containerDefinitions[1].cpu: ...`.
"""

from migration.translate.aws import autoscaling_from_aws, autoscaling_from_documents, health_check_from_aws
from migration.translate.ecs import translate_ecs, unwrap_service, unwrap_task_definition
from migration.translate.files import load_json, write_translation
from migration.translate.model import (
    Autoscaling,
    ImageRewrite,
    IngressOptions,
    KeyVault,
    ReportItem,
    SecretCopy,
    TargetGroupHealthCheck,
    TranslateOptions,
    Translation,
    TranslationError,
)
from migration.translate.options import options_for, options_from_flags
from migration.translate.render import render_files, render_markdown, report_json, summary_line

__all__ = [
    "Autoscaling",
    "ImageRewrite",
    "IngressOptions",
    "KeyVault",
    "ReportItem",
    "SecretCopy",
    "TargetGroupHealthCheck",
    "TranslateOptions",
    "Translation",
    "TranslationError",
    "autoscaling_from_aws",
    "autoscaling_from_documents",
    "health_check_from_aws",
    "load_json",
    "options_for",
    "options_from_flags",
    "render_files",
    "render_markdown",
    "report_json",
    "summary_line",
    "translate_ecs",
    "unwrap_service",
    "unwrap_task_definition",
    "write_translation",
]
