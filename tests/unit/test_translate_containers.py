"""Container definitions -> containers: dependsOn, health checks, security, Linux parameters, volumes, names."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_translate_fixtures import (
    ECR,
    container,
    deployment,
    env_of,
    fixture,
    items,
    k8s_container,
    pinned,
    pod,
    problems,
    task,
    translate,
)

# --- a multi-container task: init containers, sidecars, the main container ---------------------------


@pytest.fixture(scope="module")
def worker() -> Any:
    return translate(fixture("mmrv-worker-taskdef.json"), component="worker")


def test_depends_on_decides_init_containers_and_sidecars(worker: Any) -> None:
    spec = pod(worker)
    assert [c["name"] for c in spec["containers"]] == ["worker-main"]
    # dependencies first, in the order the dependsOn lists them
    assert [c["name"] for c in spec["initContainers"]] == ["db-migrate", "config-fetch", "otel-collector", "log-router"]
    init = {c["name"]: c for c in spec["initContainers"]}
    # SUCCESS / COMPLETE: run to completion before the others, so no restart policy and no probes
    for name in ("db-migrate", "config-fetch"):
        assert "restartPolicy" not in init[name]
        assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(init[name])
    # HEALTHY / START: sidecars that keep running
    assert init["otel-collector"]["restartPolicy"] == "Always"
    assert init["log-router"]["restartPolicy"] == "Always"
    # HEALTHY: the main container starts only once the sidecar's startup probe (its health check) passed
    assert init["otel-collector"]["startupProbe"]["exec"]["command"] == ["/healthcheck"]
    assert "startupProbe" not in init["log-router"]
    assert (
        deployment(worker)["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
        == "worker-main"
    )


def test_depends_on_is_reported_with_what_differs(worker: Any) -> None:
    notes = {i.ecs: i for i in items(worker, "taskDefinition.containerDefinitions[0].dependsOn")}
    complete = notes["Worker_Main waits for config_fetch to exit (COMPLETE)"]
    assert complete.severity == "warning" and "exit code 0" in complete.outcome
    assert notes["Worker_Main waits for db-migrate to exit 0 (SUCCESS)"].severity == "info"
    assert "startupProbe" in notes["Worker_Main waits for otel-collector to be healthy (HEALTHY)"].outcome
    assert "sidecar" in notes["Worker_Main waits for log_router to start (START)"].outcome
    (restarted,) = items(worker, "taskDefinition.containerDefinitions[4].essential")
    assert restarted.severity == "warning"


def test_names_become_dns_labels_and_renames_are_reported(worker: Any) -> None:
    (rename,) = items(worker, "taskDefinition.containerDefinitions[0].name")
    assert "'Worker_Main'" in rename.ecs and "'worker-main'" in rename.outcome
    ports = k8s_container(worker, "worker-main")["ports"]
    assert ports == [{"containerPort": 9100, "protocol": "TCP", "name": "metrics-port"}]
    (port_rename,) = items(worker, "taskDefinition.containerDefinitions[0].portMappings[0].name")
    assert "metrics-port" in port_rename.outcome
    volumes = [v["name"] for v in pod(worker)["volumes"]]
    assert "shared-config" in volumes


def test_colliding_names_stay_unique() -> None:
    result = translate(
        task(
            container("api_1", portMappings=[{"containerPort": 8080, "name": "web_port"}]),
            container("API-1", essential=False, portMappings=[{"containerPort": 8081, "name": "web-port"}]),
        )
    )
    names = [c["name"] for c in pod(result)["containers"]]
    assert names == ["api-1", "api-1-2"]
    port_names = [p["name"] for c in pod(result)["containers"] for p in c["ports"]]
    assert len(set(port_names)) == 2


def test_worker_fields_land_where_they_belong(worker: Any) -> None:
    main = k8s_container(worker, "worker-main")
    assert main["image"] == pinned("mmrv-worker")
    assert main["command"] == ["/usr/local/bin/dumb-init", "--"]  # entryPoint
    assert main["args"] == ["celery", "-A", "mmrv", "worker", "--concurrency=4"]  # command
    assert main["workingDir"] == "/app"
    assert main["securityContext"] == {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    spec = pod(worker)
    assert spec["shareProcessNamespace"] is True  # initProcessEnabled and pidMode task
    assert spec["terminationGracePeriodSeconds"] == 90  # stopTimeout
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}
    assert spec["securityContext"]["sysctls"] == [{"name": "net.core.somaxconn", "value": "1024"}]
    annotations = deployment(worker)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["team"] == "platform"  # dockerLabels
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    assert volumes[mounts["/run"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    assert mounts["/config"]["readOnly"] is True
    assert volumes[mounts["/config"]["name"]] == {"name": "shared-config", "emptyDir": {}}
    # the init container writing the shared volume mounts the same one
    fetch_mounts = k8s_container(worker, "config-fetch")["volumeMounts"]
    assert fetch_mounts == [{"name": "shared-config", "mountPath": "/config"}]


def test_worker_report(worker: Any) -> None:
    (ulimits,) = items(worker, "taskDefinition.containerDefinitions[0].ulimits")
    assert "nofile 4096/8192" in ulimits.ecs
    (firelens,) = items(worker, "taskDefinition.containerDefinitions[4].firelensConfiguration")
    assert firelens.severity == "warning"
    (env_file,) = items(worker, "taskDefinition.containerDefinitions[0].environmentFiles[0]")
    assert env_file.severity == "action" and "kubectl create configmap" in env_file.outcome
    assert k8s_container(worker, "worker-main")["envFrom"] == [{"configMapRef": {"name": "mmrv-worker-env-worker"}}]
    (mount_options,) = items(worker, "taskDefinition.containerDefinitions[0].linuxParameters.tmpfs[0].mountOptions")
    assert "noexec" in mount_options.ecs
    assert not [i for i in worker.report if "does not know" in i.ecs]


# --- health checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["CMD", "curl", "-f", "http://localhost:8080/"], ["curl", "-f", "http://localhost:8080/"]),
        (
            ["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"],
            ["/bin/sh", "-c", "curl -f http://localhost:8080/ || exit 1"],
        ),
        (["CMD-SHELL", "pg_isready", "-U", "app"], ["/bin/sh", "-c", "pg_isready -U app"]),
    ],
)
def test_health_check_commands(command: list[str], expected: list[str]) -> None:
    result = translate(task(container(healthCheck={"command": command, "interval": 10, "timeout": 3, "retries": 4})))
    c = k8s_container(result, "app")
    probe = {"exec": {"command": expected}, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 4}
    assert c["livenessProbe"] == probe
    assert c["readinessProbe"] == probe  # no target group known: the container check decides readiness too
    assert "startupProbe" not in c  # no startPeriod


def test_health_check_defaults_and_none() -> None:
    result = translate(task(container(healthCheck={"command": ["CMD", "true"]})))
    assert k8s_container(result, "app")["livenessProbe"] == {
        "exec": {"command": ["true"]},
        "periodSeconds": 30,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    disabled = translate(task(container(healthCheck={"command": ["NONE"]})))
    assert "livenessProbe" not in k8s_container(disabled, "app")
    assert items(disabled, "taskDefinition.containerDefinitions[0].healthCheck.command")[0].ecs == "health check NONE"


def test_start_period_becomes_a_startup_probe() -> None:
    check = {"command": ["CMD", "true"], "interval": 30, "retries": 3, "startPeriod": 120}
    c = k8s_container(translate(task(container(healthCheck=check))), "app")
    startup = c["startupProbe"]
    assert startup["periodSeconds"] == 10
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120 + 3 * 10
    assert "initialDelaySeconds" not in c["livenessProbe"]


@pytest.mark.parametrize(
    ("check", "field", "message"),
    [
        ({"command": ["curl", "-f", "x"]}, "healthCheck.command", 'must start with "CMD" or "CMD-SHELL"'),
        ({"command": ["CMD-SHELL"]}, "healthCheck.command", "CMD-SHELL needs the shell command"),
        ({"command": []}, "healthCheck.command", "is empty"),
        ({"command": ["CMD", "true"], "interval": 2}, "healthCheck.interval", "below the minimum 5"),
        ({"command": ["CMD", "true"], "retries": 11}, "healthCheck.retries", "above the maximum 10"),
        ({"command": ["CMD", "true"], "startPeriod": 301}, "healthCheck.startPeriod", "above the maximum 300"),
        ({"command": "CMD true"}, "healthCheck.command", "must be a list of strings"),
    ],
)
def test_bad_health_checks_name_the_field(check: dict[str, Any], field: str, message: str) -> None:
    (problem,) = problems(task(container(healthCheck=check)))
    assert problem.startswith(f"taskDefinition.containerDefinitions[0].{field}: ")
    assert message in problem


# --- dependsOn -----------------------------------------------------------------------------------


def two(dependency: dict[str, Any], helper: dict[str, Any] | None = None) -> dict[str, Any]:
    return task(
        container("app", dependsOn=[dependency], portMappings=[{"containerPort": 8080}]),
        container("helper", **(helper or {"essential": False})),
    )


@pytest.mark.parametrize(
    ("td", "message"),
    [
        (two({"containerName": "helper", "condition": "COMPLETE"}, {"essential": True}), "but it is essential"),
        (two({"containerName": "nope", "condition": "START"}), "no container named 'nope'"),
        (two({"containerName": "helper", "condition": "HEALTHY"}), "HEALTHY needs a healthCheck"),
        (two({"containerName": "helper", "condition": "WHEN_READY"}), "'WHEN_READY' is not allowed"),
        (two({"containerName": "helper"}), "required, but missing"),
        (two({"containerName": "app", "condition": "START"}), "cannot depend on itself"),
    ],
)
def test_bad_dependencies_name_the_field(td: dict[str, Any], message: str) -> None:
    (problem,) = problems(td)
    assert problem.startswith("taskDefinition.containerDefinitions[0].dependsOn[0].")
    assert message in problem


def test_dependency_cycles_and_double_roles_are_errors() -> None:
    cycle = task(
        container("a", dependsOn=[{"containerName": "b", "condition": "START"}]),
        container("b", dependsOn=[{"containerName": "a", "condition": "START"}]),
    )
    assert any("cycle" in p for p in problems(cycle))
    both = task(
        container("a", dependsOn=[{"containerName": "c", "condition": "SUCCESS"}]),
        container("b", dependsOn=[{"containerName": "c", "condition": "START"}]),
        container("c", essential=False),
    )
    (problem,) = problems(both)
    assert problem.startswith("taskDefinition.containerDefinitions[2].name: ")
    assert "both an init container and a sidecar" in problem


def test_non_essential_regular_containers_are_reported() -> None:
    result = translate(task(container("app"), container("cron", essential=False)))
    assert [c["name"] for c in pod(result)["containers"]] == ["app", "cron"]
    (note,) = items(result, "taskDefinition.containerDefinitions[1].essential")
    assert note.severity == "warning" and "restarts it" in note.outcome


# --- security, Linux parameters, process -------------------------------------------------------


def test_security_fields() -> None:
    result = translate(
        task(
            container(
                privileged=True,
                readonlyRootFilesystem=True,
                user="nginx",
                dockerSecurityOptions=["no-new-privileges", "label:type:container_t"],
                linuxParameters={
                    "capabilities": {"add": ["NET_BIND_SERVICE", "SYS_PTRACE"], "drop": ["NET_RAW"]},
                    "devices": [{"hostPath": "/dev/fuse"}],
                    "maxSwap": 0,
                    "swappiness": 60,
                },
                interactive=True,
                pseudoTerminal=True,
            )
        )
    )
    c = k8s_container(result, "app")
    assert c["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "privileged": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"add": ["NET_BIND_SERVICE", "SYS_PTRACE"], "drop": ["NET_RAW"]},
    }
    assert (c["stdin"], c["tty"]) == (True, True)
    severities = {
        i.field.rsplit(".", 1)[-1]: i.severity for i in items(result, "taskDefinition.containerDefinitions[0]")
    }
    assert severities["user"] == "warning"  # a name: Kubernetes needs numeric ids
    assert severities["privileged"] == "warning"
    assert severities["dockerSecurityOptions"] == "warning"
    assert severities["devices"] == "action"
    assert severities["maxSwap"] == severities["swappiness"] == "info"


def test_numeric_user_with_a_group_name() -> None:
    c = k8s_container(translate(task(container(user="1001:www-data"))), "app")
    assert c["securityContext"] == {"runAsUser": 1001}


def test_pod_level_fields_are_merged_from_containers() -> None:
    result = translate(
        task(
            container(
                "app",
                extraHosts=[{"hostname": "db.internal", "ipAddress": "10.0.0.5"}],
                dnsSearchDomains=["mmrv.internal"],
                stopTimeout=45,
                dockerLabels={"com.example/owner": "team-a", "bad key!": "x"},
            ),
            container(
                "helper",
                essential=False,
                extraHosts=[{"hostname": "cache.internal", "ipAddress": "10.0.0.5"}],
                dnsServers=["10.0.0.2"],
                stopTimeout=10,
            ),
        )
    )
    spec = pod(result)
    assert spec["hostAliases"] == [{"ip": "10.0.0.5", "hostnames": ["db.internal", "cache.internal"]}]
    assert spec["dnsConfig"] == {"nameservers": ["10.0.0.2"], "searches": ["mmrv.internal"]}
    assert spec["terminationGracePeriodSeconds"] == 45
    annotations = deployment(result)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["com.example/owner"] == "team-a"
    assert "bad key!" not in annotations
    assert any("'bad key!'" in i.ecs for i in items(result, "taskDefinition.containerDefinitions[0].dockerLabels"))


def test_gpu_and_fields_without_equivalent() -> None:
    result = translate(
        task(
            container(
                resourceRequirements=[{"type": "GPU", "value": "1"}],
                links=["db"],
                hostname="api",
                disableNetworking=False,
                repositoryCredentials={"credentialsParameter": "arn:aws:secretsmanager:eu-west-1:1:secret:x"},
                restartPolicy={"enabled": True, "restartAttemptPeriod": 60},
                startTimeout=120,
            )
        )
    )
    c = k8s_container(result, "app")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    fields = {i.field.rsplit(".", 1)[-1]: i for i in items(result, "taskDefinition.containerDefinitions[0]")}
    assert fields["resourceRequirements"].severity == "action"
    for key in ("links", "hostname", "repositoryCredentials", "restartPolicy", "startTimeout"):
        assert key in fields, key
    assert "ACR" in fields["repositoryCredentials"].outcome  # the image comes from ACR now


def test_unknown_fields_are_reported_never_dropped() -> None:
    result = translate(task(container(futureField={"x": 1}, emptyFutureField=[]), futureTaskField="y"))
    fields = {i.field for i in result.report if "does not know" in i.ecs}
    assert fields == {"taskDefinition.containerDefinitions[0].futureField", "taskDefinition.futureTaskField"}


# --- environment, files, ports, volumes ---------------------------------------------------------------


def test_environment_and_duplicates() -> None:
    c = k8s_container(translate(task(container(environment=[{"name": "A", "value": "1"}, {"name": "EMPTY"}]))), "app")
    assert c["env"] == [{"name": "A", "value": "1"}, {"name": "EMPTY", "value": ""}]
    (problem,) = problems(task(container(environment=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])))
    assert problem.startswith("taskDefinition.containerDefinitions[0].environment[1].name: 'A' is set twice")
    (bad,) = problems(task(container(environment=[{"name": "1BAD", "value": "x"}])))
    assert "not a valid environment variable name" in bad


def test_environment_files_as_error() -> None:
    td = task(container(environmentFiles=[{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}]))
    (problem,) = problems(td, environment_files="error")
    assert problem.startswith("taskDefinition.containerDefinitions[0].environmentFiles[0].value: S3 environment file")


def test_long_lived_aws_keys_are_flagged() -> None:
    env = [{"name": "AWS_ACCESS_KEY_ID", "value": "AKIA..."}, {"name": "AWS_SECRET_ACCESS_KEY", "value": "..."}]
    result = translate(task(container(environment=env)))
    (item,) = [i for i in result.report if "long-lived AWS keys" in i.ecs]
    assert item.severity == "action"


def test_port_mappings() -> None:
    result = translate(
        task(
            container(
                portMappings=[
                    {"containerPort": 8080, "hostPort": 80, "protocol": "tcp", "appProtocol": "http2"},
                    {"containerPort": 5353, "protocol": "udp", "name": "dns"},
                    {"containerPortRange": "9000-9100", "protocol": "tcp"},
                ]
            ),
            networkMode="bridge",
        )
    )
    ports = k8s_container(result, "app")["ports"]
    assert ports == [
        {"containerPort": 8080, "protocol": "TCP"},
        {"containerPort": 5353, "protocol": "UDP", "name": "dns"},
    ]
    service_ports = result.manifest("Service")["spec"]["ports"]
    assert service_ports == [
        {"name": "tcp-8080", "port": 8080, "targetPort": 8080, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}
    ]
    found = {(i.field, i.severity) for i in items(result, "taskDefinition")}
    assert ("taskDefinition.containerDefinitions[0].portMappings[0].hostPort", "warning") in found
    assert ("taskDefinition.containerDefinitions[0].portMappings[2].containerPortRange", "action") in found
    assert ("taskDefinition.networkMode", "warning") in found  # bridge
    (udp,) = [i for i in items(result, "taskDefinition.containerDefinitions[0].portMappings") if "5353" in i.ecs]
    assert "NetworkPolicy does not admit it" in udp.outcome


def test_volumes_efs_docker_host_and_volumes_from() -> None:
    result = translate(
        task(
            container("app", mountPoints=[{"sourceVolume": "uploads", "containerPath": "/data"}]),
            container("reader", essential=False, volumesFrom=[{"sourceContainer": "app", "readOnly": True}]),
            volumes=[
                {
                    "name": "uploads",
                    "efsVolumeConfiguration": {"fileSystemId": "fs-0123456789abcdef0", "rootDirectory": "/"},
                },
                {"name": "cache", "dockerVolumeConfiguration": {"scope": "shared", "driver": "rexray/ebs"}},
                {"name": "logs", "host": {"sourcePath": "/var/log/app"}},
            ],
        )
    )
    volumes = {v["name"]: v for v in pod(result)["volumes"]}
    assert volumes["uploads"] == {"name": "uploads", "persistentVolumeClaim": {"claimName": "mmrv-backend-uploads"}}
    assert volumes["cache"] == {"name": "cache", "emptyDir": {}}
    assert volumes["logs"] == {"name": "logs", "emptyDir": {}}
    assert k8s_container(result, "reader")["volumeMounts"] == [
        {"name": "uploads", "mountPath": "/data", "readOnly": True}
    ]
    severities = {i.field: i.severity for i in items(result, "taskDefinition.volumes")}
    assert severities == {
        "taskDefinition.volumes[0].efsVolumeConfiguration": "action",
        "taskDefinition.volumes[1].dockerVolumeConfiguration": "warning",
        "taskDefinition.volumes[2].host.sourcePath": "warning",
    }


def test_bad_mounts_name_the_field() -> None:
    td = task(
        container("app", mountPoints=[{"sourceVolume": "missing", "containerPath": "/x"}]),
        container("b", essential=False, volumesFrom=[{"sourceContainer": "ghost"}]),
    )
    assert problems(td) == [
        "taskDefinition.containerDefinitions[0].mountPoints[0].sourceVolume: no task volume named 'missing'",
        "taskDefinition.containerDefinitions[1].volumesFrom[0].sourceContainer: no container named 'ghost' in the task",
    ]


# --- images ----------------------------------------------------------------------------------------


def test_images_mapped_kept_or_refused() -> None:
    ecr = f"{ECR}/unmapped:2.0"
    (problem,) = problems(task(container(image=ecr)))
    assert problem.startswith("taskDefinition.containerDefinitions[0].image: ECR image")
    assert "--image-map" in problem and "'app'" in problem
    kept = translate(task(container(image=ecr)), keep_tags=True, acr_login_server="mmrvstagingacr.azurecr.io")
    assert k8s_container(kept, "app")["image"] == "mmrvstagingacr.azurecr.io/unmapped:2.0"
    assert items(kept, "taskDefinition.containerDefinitions[0].image")[0].severity == "warning"
    as_is = translate(task(container(image=ecr)), keep_tags=True)
    assert k8s_container(as_is, "app")["image"] == ecr
    assert items(as_is, "taskDefinition.containerDefinitions[0].image")[0].severity == "action"
    # a mapping may name the image without its registry
    short = translate(task(container(image=ecr)), images={"unmapped:2.0": pinned("unmapped")})
    assert k8s_container(short, "app")["image"] == pinned("unmapped")
    public = translate(task(container(image="public.ecr.aws/nginx/nginx:1.27")))
    assert k8s_container(public, "app")["image"] == "public.ecr.aws/nginx/nginx:1.27"
    assert env_of(k8s_container(public, "app")) == {}
