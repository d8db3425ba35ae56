"""Options from what the AWS CLI prints: the target group's health check, the service's scaling.

`health_check_from_aws` reads `aws elbv2 describe-target-groups` output (or one of its
`TargetGroups`); `autoscaling_from_aws` reads `aws application-autoscaling
describe-scalable-targets` and `describe-scaling-policies` output. Both are pure and raise
TranslationError naming the field on input they cannot use.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from migration.translate.fields import Ledger, Node
from migration.translate.model import Autoscaling, TargetGroupHealthCheck, TranslationError

ECS_DIMENSION = "ecs:service:DesiredCount"
PREDEFINED = {"ECSServiceAverageCPUUtilization": "cpu", "ECSServiceAverageMemoryUtilization": "memory"}


def _pick(doc: Any, wrapper: str, what: str, match: str | None, match_key: str) -> tuple[dict[str, Any], str]:
    """One object from `{wrapper: [...]}` (or the bare object): the one whose `match_key` is `match`."""
    if isinstance(doc, dict) and wrapper in doc:
        items = doc[wrapper]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TranslationError([f"{wrapper}: must be a list of objects"], source=what)
        chosen = [i for i in items if match is None or i.get(match_key) == match]
        if len(chosen) != 1:
            found = ", ".join(str(i.get(match_key)) for i in items) or "none"
            wanted = f" with {match_key} {match}" if match else ""
            raise TranslationError(
                [f"{wrapper}: expected exactly one entry{wanted}, found {len(chosen)} (entries: {found})"], source=what
            )
        return chosen[0], f"{wrapper}[{items.index(chosen[0])}]"
    if isinstance(doc, dict):
        return doc, what
    raise TranslationError([f"(top level): expected an object, got {type(doc).__name__}"], source=what)


def health_check_from_aws(doc: Any, target_group_arn: str | None = None) -> TargetGroupHealthCheck:
    """The readiness probe's source: one target group of `describe-target-groups` output."""
    raw, path = _pick(doc, "TargetGroups", "target group", target_group_arn, "TargetGroupArn")
    ledger = Ledger()
    tg = ledger.node(raw, path)
    if tg.flag("HealthCheckEnabled") is False:
        raise TranslationError([f"{path}.HealthCheckEnabled: false: the target group has no health check to carry"])
    protocol = tg.text("HealthCheckProtocol") or "HTTP"
    matcher = tg.obj("Matcher")
    port = tg.text("HealthCheckPort")
    values: dict[str, Any] = {
        "protocol": protocol,
        "path": tg.text("HealthCheckPath") or "/",
        "port": int(port) if port and port.isdigit() else None,
        "interval_seconds": tg.whole("HealthCheckIntervalSeconds"),
        "timeout_seconds": tg.whole("HealthCheckTimeoutSeconds"),
        "healthy_threshold": tg.whole("HealthyThresholdCount"),
        "unhealthy_threshold": tg.whole("UnhealthyThresholdCount"),
        "matcher": (matcher.text("HttpCode") if matcher else None),
        "target_group": tg.text("TargetGroupArn") or tg.text("TargetGroupName"),
    }
    if matcher and matcher.has("GrpcCode"):
        ledger.problem(f"{path}.Matcher.GrpcCode", "gRPC health checks have no Kubernetes readiness probe here")
    if ledger.problems:
        raise TranslationError(ledger.problems, source="target group")
    try:
        return TargetGroupHealthCheck(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise TranslationError(_validation_lines(exc, path), source="target group") from None


def autoscaling_from_aws(
    scalable_targets: Any, scaling_policies: Any | None = None, resource_id: str | None = None
) -> Autoscaling:
    """min/max from the ECS service's scalable target; CPU/memory targets from its target tracking policies."""
    raw, path = _pick(scalable_targets, "ScalableTargets", "scalable targets", resource_id, "ResourceId")
    ledger = Ledger()
    target = ledger.node(raw, path)
    dimension = target.text("ScalableDimension")
    if dimension and dimension != ECS_DIMENSION:
        target.problem("ScalableDimension", f"{dimension!r} is not an ECS service's {ECS_DIMENSION}")
    resource = target.text("ResourceId") or resource_id
    low = target.whole("MinCapacity", required=True, minimum=0)
    high = target.whole("MaxCapacity", required=True, minimum=1)
    notes: list[tuple[str, str, str]] = []
    if low == 0:
        notes.append(
            (
                f"{path}.MinCapacity",
                "scales the service to 0 tasks",
                "minReplicas 1: an HPA scales to 0 only with a feature gate AKS does not enable",
            )
        )
    suspended = target.obj("SuspendedState")
    if suspended is not None:
        stopped = [k for k in ("DynamicScalingInSuspended", "DynamicScalingOutSuspended") if suspended.flag(k)]
        suspended.ignore("ScheduledScalingSuspended")
        if stopped:
            notes.append((f"{path}.SuspendedState", f"{', '.join(stopped)}", "not carried: the HPA scales both ways"))
    values: dict[str, Any] = {"min_replicas": max(low or 1, 1), "max_replicas": high or 1}
    policies: list[Node] = []
    if scaling_policies is not None:
        if isinstance(scaling_policies, dict) and "ScalingPolicies" in scaling_policies:
            policies = ledger.node(scaling_policies, "").objs("ScalingPolicies")
        elif isinstance(scaling_policies, list):
            policies = ledger.node({"ScalingPolicies": scaling_policies}, "").objs("ScalingPolicies")
        else:
            ledger.problem("ScalingPolicies", 'expected describe-scaling-policies output ({"ScalingPolicies": [...]})')
    for policy in policies:
        if resource and policy.text("ResourceId") not in (None, resource):
            continue
        name = policy.text("PolicyName") or "?"
        kind = policy.text("PolicyType")
        config = policy.obj("TargetTrackingScalingPolicyConfiguration")
        where = policy.path.lstrip(".")
        if kind != "TargetTrackingScaling" or config is None:
            notes.append(
                (
                    where,
                    f"{kind} policy {name!r}",
                    "not translated: an HPA scales on target values only; add HPA behavior by hand",
                )
            )
            continue
        predefined = config.obj("PredefinedMetricSpecification")
        metric = predefined.text("PredefinedMetricType") if predefined else None
        resource_name = PREDEFINED.get(metric or "")
        if resource_name is None:
            shown = metric or "a customized metric"
            notes.append(
                (
                    where,
                    f"target tracking on {shown} ({name!r})",
                    "not translated: the HPA scales on CPU/memory; use KEDA or custom metrics for this one",
                )
            )
            continue
        value = config.raw("TargetValue")
        if isinstance(value, bool) or not isinstance(value, int | float):
            config.problem("TargetValue", "must be a number")
            continue
        values[f"{resource_name}_target_percent"] = float(value)
        values["scale_in_cooldown_seconds"] = config.whole("ScaleInCooldown")
        values["scale_out_cooldown_seconds"] = config.whole("ScaleOutCooldown")
        values["disable_scale_in"] = bool(config.flag("DisableScaleIn"))
    if ledger.problems:
        raise TranslationError(ledger.problems, source="autoscaling")
    try:
        return Autoscaling(**{k: v for k, v in values.items() if v is not None}, notes=tuple(notes))
    except ValidationError as exc:
        raise TranslationError(_validation_lines(exc, path), source="autoscaling") from None


def autoscaling_from_documents(docs: list[Any], resource_id: str | None = None) -> Autoscaling:
    """The same from files in any order: the describe-scaling-policies output is told apart by its key."""
    policies = [d for d in docs if isinstance(d, dict) and "ScalingPolicies" in d]
    targets = [d for d in docs if not (isinstance(d, dict) and "ScalingPolicies" in d)]
    if len(targets) != 1 or len(policies) > 1:
        raise TranslationError(
            [
                f"expected one describe-scalable-targets output and at most one describe-scaling-policies output, "
                f"got {len(targets)} and {len(policies)}"
            ],
            source="autoscaling",
        )
    return autoscaling_from_aws(targets[0], policies[0] if policies else None, resource_id)


def _validation_lines(exc: ValidationError, path: str) -> list[str]:
    return [f"{path} ({'.'.join(str(p) for p in e['loc'])}): {e['msg']}" for e in exc.errors(include_url=False)]
