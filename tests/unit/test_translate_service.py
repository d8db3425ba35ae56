"""The ECS service, its target group and its autoscaling -> rollout, Service/Ingress, HPA, PDB."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from migration.translate import (
    IngressOptions,
    TargetGroupHealthCheck,
    TranslationError,
    autoscaling_from_aws,
    health_check_from_aws,
)
from tests.unit.test_translate_fixtures import (
    deployment,
    fixture,
    items,
    k8s_container,
    problems,
    translate,
)

TD = fixture("mmrv-backend-taskdef.json")


def service(**changes: Any) -> dict[str, Any]:
    svc = copy.deepcopy(fixture("mmrv-backend-service-unwrapped.json"))
    svc.update(changes)
    return svc


@pytest.mark.parametrize(
    ("minimum", "maximum", "surge", "unavailable", "pdb"),
    [
        (100, 200, "100%", "0%", {"maxUnavailable": 1}),
        (50, 200, "100%", "50%", {"minAvailable": "50%"}),
        (0, 100, "0%", "100%", {"maxUnavailable": 1}),
        (75, 150, "50%", "25%", {"minAvailable": "75%"}),
    ],
)
def test_deployment_configuration_to_rolling_update_and_pdb(
    minimum: int, maximum: int, surge: str, unavailable: str, pdb: dict[str, Any]
) -> None:
    config = {"minimumHealthyPercent": minimum, "maximumPercent": maximum}
    result = translate(TD, service(deploymentConfiguration=config))
    assert deployment(result)["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": surge, "maxUnavailable": unavailable}
    spec = result.manifest("PodDisruptionBudget")["spec"]
    assert {k: v for k, v in spec.items() if k in ("maxUnavailable", "minAvailable")} == pdb
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_a_rollout_that_cannot_move_is_an_error() -> None:
    (problem,) = problems(TD, service(deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 100}))
    assert problem == (
        "service.deploymentConfiguration: maximumPercent 100 with minimumHealthyPercent 100 "
        "leaves no room to replace a task"
    )


def test_desired_count_rollout_deadline_and_alarms() -> None:
    config = {
        "deploymentCircuitBreaker": {"enable": True, "rollback": False},
        "alarms": {"alarmNames": ["mmrv-5xx"], "enable": True, "rollback": True},
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
    }
    result = translate(TD, service(desiredCount=3, deploymentConfiguration=config), rollout_deadline_seconds=900)
    spec = deployment(result)["spec"]
    assert (spec["replicas"], spec["progressDeadlineSeconds"], spec["revisionHistoryLimit"]) == (3, 900, 10)
    (breaker,) = items(result, "service.deploymentConfiguration.deploymentCircuitBreaker")
    assert "progressDeadlineSeconds 900" in breaker.outcome and "rolls back" not in breaker.outcome
    (alarms,) = items(result, "service.deploymentConfiguration.alarms")
    assert alarms.severity == "warning" and "mmrv-5xx" in alarms.ecs


def test_service_fields_without_equivalent_are_reported() -> None:
    result = translate(
        TD,
        service(
            serviceRegistries=[{"registryArn": "arn:aws:servicediscovery:eu-west-1:123456789012:service/srv-1"}],
            placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}],
            deploymentController={"type": "CODE_DEPLOY"},
            enableExecuteCommand=True,
            schedulingStrategy="DAEMON",
            taskDefinition="arn:aws:ecs:eu-west-1:123456789012:task-definition/mmrv-backend-staging:2",
        ),
    )
    severities = {i.field: i.severity for i in items(result, "service.")}
    assert severities["service.serviceRegistries"] == "info"
    assert severities["service.placementStrategy"] == "info"
    assert severities["service.deploymentController"] == "warning"
    assert severities["service.enableExecuteCommand"] == "info"
    assert severities["service.schedulingStrategy"] == "warning"
    assert severities["service.taskDefinition"] == "warning"  # the service runs another revision
    assert not [i for i in result.report if "does not know" in i.ecs]


def test_load_balancer_must_name_a_container_port() -> None:
    lb = {"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/x/1", "containerName": "api"}
    assert problems(TD, service(loadBalancers=[{**lb, "containerPort": 8080}])) == [
        "service.loadBalancers[0].containerName: no container named 'api' in the task definition"
    ]
    assert problems(TD, service(loadBalancers=[{**lb, "containerName": "mmrv-backend", "containerPort": 9999}])) == [
        "service.loadBalancers[0].containerPort: container 'mmrv-backend' has no portMapping for port 9999"
    ]


def test_ingress_instead_of_a_load_balancer() -> None:
    ingress = IngressOptions(hosts=["staging-api.mmrv.example.com"], tls_secret="staging-api-tls")
    result = translate(TD, service(), expose="Ingress", ingress=ingress)
    assert result.kinds()[4:6] == ["Service", "Ingress"]
    assert result.manifest("Service")["spec"]["type"] == "ClusterIP"
    spec = result.manifest("Ingress")["spec"]
    assert spec["ingressClassName"] == "webapprouting.kubernetes.azure.com"
    assert spec["tls"] == [{"hosts": ["staging-api.mmrv.example.com"], "secretName": "staging-api-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "staging-api.mmrv.example.com"
    assert rule["http"]["paths"] == [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "mmrv-backend", "port": {"number": 8080}}}}
    ]
    # no TLS action item with a certificate given; the LoadBalancer TLS note does not apply
    assert [i.field for i in result.report if i.severity == "action"] == ["taskDefinition.taskRoleArn"]


def test_ingress_options_need_hosts() -> None:
    with pytest.raises(ValueError, match=r"needs ingress\.hosts"):
        translate(TD, service(), expose="Ingress")


def test_target_group_health_check_variants() -> None:
    tcp = translate(TD, service(), health_check=TargetGroupHealthCheck(protocol="TCP"))
    assert k8s_container(tcp, "mmrv-backend")["readinessProbe"]["tcpSocket"] == {"port": 8080}
    https = translate(TD, service(), health_check=TargetGroupHealthCheck(protocol="HTTPS", path="/ready", port=8443))
    probe = k8s_container(https, "mmrv-backend")["readinessProbe"]
    assert probe["httpGet"] == {"path": "/ready", "port": 8443, "scheme": "HTTPS"}
    lenient = translate(TD, service(), health_check=TargetGroupHealthCheck(matcher="200-499"))
    (matcher,) = [i for i in lenient.report if i.field.endswith(".matcher")]
    assert matcher.severity == "warning" and "200-399" in matcher.outcome


def test_health_check_from_describe_target_groups() -> None:
    check = health_check_from_aws(fixture("mmrv-backend-target-group.json"))
    assert (check.path, check.interval_seconds, check.healthy_threshold, check.unhealthy_threshold) == (
        "/healthz",
        15,
        2,
        3,
    )
    assert check.port is None  # traffic-port
    group = fixture("mmrv-backend-target-group.json")
    two = {"TargetGroups": [group["TargetGroups"][0], {**group["TargetGroups"][0], "TargetGroupArn": "other"}]}
    with pytest.raises(TranslationError, match="expected exactly one entry"):
        health_check_from_aws(two)
    assert health_check_from_aws(two, target_group_arn="other").target_group == "other"
    disabled = {**group["TargetGroups"][0], "HealthCheckEnabled": False}
    with pytest.raises(TranslationError, match="HealthCheckEnabled: false"):
        health_check_from_aws(disabled)


def test_autoscaling_from_aws_output() -> None:
    scaling = autoscaling_from_aws(
        fixture("mmrv-backend-scalable-targets.json"), fixture("mmrv-backend-scaling-policies.json")
    )
    assert (scaling.min_replicas, scaling.max_replicas, scaling.cpu_target_percent) == (2, 6, 60.0)
    assert (scaling.scale_in_cooldown_seconds, scaling.scale_out_cooldown_seconds) == (300, 60)
    assert scaling.notes == ()


def test_autoscaling_policies_an_hpa_cannot_express() -> None:
    targets = copy.deepcopy(fixture("mmrv-backend-scalable-targets.json"))
    targets["ScalableTargets"][0]["MinCapacity"] = 0
    policies = copy.deepcopy(fixture("mmrv-backend-scaling-policies.json"))
    base = policies["ScalingPolicies"][0]
    memory = copy.deepcopy(base)
    memory["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"] = (
        "ECSServiceAverageMemoryUtilization"
    )
    memory["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] = 75.5
    memory["TargetTrackingScalingPolicyConfiguration"]["DisableScaleIn"] = True
    requests = copy.deepcopy(base)
    requests["PolicyName"] = "requests"
    requests["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"] = {
        "PredefinedMetricType": "ALBRequestCountPerTarget",
        "ResourceLabel": "app/mmrv-staging/50dc6c495c0c9188/targetgroup/mmrv-backend-staging/8a3f2c1d9e7b6a54",
    }
    step = {"PolicyName": "step", "PolicyType": "StepScaling", "ResourceId": base["ResourceId"],
            "StepScalingPolicyConfiguration": {"AdjustmentType": "ChangeInCapacity"}}  # fmt: skip
    policies["ScalingPolicies"] = [base, memory, requests, step]
    scaling = autoscaling_from_aws(targets, policies)
    assert (scaling.min_replicas, scaling.cpu_target_percent, scaling.memory_target_percent) == (1, 60.0, 75.5)
    assert scaling.disable_scale_in
    assert [n[1] for n in scaling.notes] == [
        "scales the service to 0 tasks",
        "target tracking on ALBRequestCountPerTarget ('requests')",
        "StepScaling policy 'step'",
    ]
    result = translate(TD, service(), autoscaling=scaling)
    hpa = result.manifest("HorizontalPodAutoscaler")["spec"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu", "memory"]
    assert hpa["metrics"][1]["resource"]["target"]["averageUtilization"] == 76
    assert hpa["behavior"]["scaleDown"]["selectPolicy"] == "Disabled"
    assert {i.ecs for i in result.report if i.field.startswith("ScalingPolicies")} >= {"StepScaling policy 'step'"}


def test_autoscaling_bad_input() -> None:
    with pytest.raises(TranslationError) as info:
        autoscaling_from_aws({"ScalableTargets": [{"ScalableDimension": "dynamodb:table:ReadCapacityUnits"}]})
    assert info.value.problems == [
        "ScalableTargets[0].ScalableDimension: 'dynamodb:table:ReadCapacityUnits' is not an ECS service's "
        "ecs:service:DesiredCount",
        "ScalableTargets[0].MinCapacity: required, but missing",
        "ScalableTargets[0].MaxCapacity: required, but missing",
    ]


def test_hpa_without_metrics_and_without_cpu_requests() -> None:
    td = copy.deepcopy(fixture("mmrv-backend-taskdef-unwrapped.json"))
    td["requiresCompatibilities"] = ["EC2"]
    del td["cpu"], td["memory"]
    scaling = autoscaling_from_aws(
        fixture("mmrv-backend-scalable-targets.json"), fixture("mmrv-backend-scaling-policies.json")
    )
    result = translate(td, service(launchType="EC2"), autoscaling=scaling)
    (missing,) = [i for i in items(result, "autoscaling") if "needs cpu requests" in i.outcome]
    assert missing.severity == "warning"
    bare = translate(TD, service(), autoscaling=scaling.model_copy(update={"cpu_target_percent": None}))
    assert "metrics" not in bare.manifest("HorizontalPodAutoscaler")["spec"]
    assert any("80% average CPU" in i.outcome for i in items(bare, "autoscaling"))


def test_describe_services_with_several_services() -> None:
    one = fixture("mmrv-backend-service.json")["services"][0]
    other = {**one, "serviceName": "other", "taskDefinition": "arn:aws:ecs:eu-west-1:123456789012:task-definition/x:1"}
    picked = translate(TD, {"services": [other, one]})
    assert "service mmrv-backend" in picked.source
    stranger = {**other, "serviceName": "third"}
    with pytest.raises(TranslationError, match="3 services"):
        translate(TD, {"services": [other, stranger, {**other, "serviceName": "fourth"}]})
    with pytest.raises(TranslationError, match=r"services: empty \(arn:x: MISSING\)"):
        translate(TD, {"services": [], "failures": [{"arn": "arn:x", "reason": "MISSING"}]})


def test_disabled_settings_are_not_mistaken_for_unknown_fields() -> None:
    config = {
        "deploymentCircuitBreaker": {"enable": False, "rollback": False},
        "alarms": {"alarmNames": [], "enable": False, "rollback": False},
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
    }
    td = copy.deepcopy(TD)
    td["taskDefinition"]["containerDefinitions"][0]["healthCheck"] = {"command": ["NONE"], "interval": 30}
    result = translate(td, service(deploymentConfiguration=config, enableExecuteCommand=False))
    assert not [i for i in result.report if "does not know" in i.ecs]
    assert not items(result, "service.deploymentConfiguration.deploymentCircuitBreaker")
    assert deployment(result)["spec"]["progressDeadlineSeconds"] == 600  # the rollout deadline holds anyway
