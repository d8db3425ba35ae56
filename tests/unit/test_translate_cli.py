"""`mmrv-migrate translate ecs` as a person runs it: a subprocess on the fixture files, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.unit.test_translate_fixtures import (
    CLIENT_ID,
    ECR,
    FIXTURES,
    TENANT,
    check_secret_provider_class,
    pinned,
)

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "mmrv-migrate")
IMAGE_MAP = f"{ECR}/mmrv-backend:1.4.0={pinned('mmrv-backend')}"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    # wide columns: rich wraps at 80 when not on a terminal; keep each line whole. No AWS or Azure variables needed.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))} | {"COLUMNS": "400"}
    return subprocess.run(
        [CLI, "translate", "ecs", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120
    )


def test_full_translation_writes_one_file_per_object(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run(
        str(FIXTURES / "mmrv-backend-taskdef.json"),
        "--service", str(FIXTURES / "mmrv-backend-service.json"),
        "--target-group", str(FIXTURES / "mmrv-backend-target-group.json"),
        "--autoscaling", str(FIXTURES / "mmrv-backend-scaling-policies.json"),  # any order
        "--autoscaling", str(FIXTURES / "mmrv-backend-scalable-targets.json"),
        "--image-map", IMAGE_MAP,
        "--key-vault", "kv-mmrv-staging", "--tenant-id", TENANT, "--client-id", CLIENT_ID,
        "--aws-role-arn", "arn:aws:iam::123456789012:role/mmrv-staging-backend-aks",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "01-namespace-mmrv.yaml",
        "02-serviceaccount-mmrv-backend.yaml",
        "03-secretproviderclass-mmrv-backend-keyvault.yaml",
        "04-deployment-mmrv-backend.yaml",
        "05-service-mmrv-backend.yaml",
        "06-horizontalpodautoscaler-mmrv-backend.yaml",
        "07-poddisruptionbudget-mmrv-backend.yaml",
        "08-networkpolicy-mmrv-backend.yaml",
        "report.json",
        "report.md",
    ]
    # one object per file, valid YAML, the kind and name the file says
    for name in names[:-2]:
        (doc,) = list(yaml.safe_load_all((out / name).read_text()))
        assert name == f"{name[:2]}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        if doc["kind"] == "SecretProviderClass":
            check_secret_provider_class(doc)
    deployment = yaml.safe_load((out / "04-deployment-mmrv-backend.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == pinned("mmrv-backend")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = yaml.safe_load((out / "06-horizontalpodautoscaler-mmrv-backend.yaml").read_text())
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    report = json.loads((out / "report.json").read_text())
    assert report["source"] == "mmrv-backend-staging:3 (service mmrv-backend)"
    assert [f["file"] for f in report["files"]] == names[:-2]
    assert report["counts"] == {
        "action": sum(1 for i in report["report"] if i["severity"] == "action"),
        "warning": sum(1 for i in report["report"] if i["severity"] == "warning"),
        "info": sum(1 for i in report["report"] if i["severity"] == "info"),
    }
    assert any(i["field"].endswith("logConfiguration") for i in report["report"])
    markdown = (out / "report.md").read_text()
    assert "## Files, in apply order" in markdown and "| 04-deployment-mmrv-backend.yaml | Deployment |" in markdown
    # stdout: what was written, how many report items, and the ones to look at
    lines = done.stdout.splitlines()
    assert lines[0] == f"translated mmrv-backend-staging:3 (service mmrv-backend) -> {out}/"
    assert "  04-deployment-mmrv-backend.yaml" in lines
    summary = next(line for line in lines if line.startswith("8 Kubernetes objects; report: "))
    assert f"{len(report['report'])} items" in summary
    assert any(line.startswith("  [action] service.loadBalancers[0].targetGroupArn") for line in lines)
    assert not any("[info]" in line for line in lines)
    assert done.stderr == ""


def test_unwrapped_inputs_and_a_rerun_replace_what_the_last_run_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run(
        str(FIXTURES / "mmrv-backend-taskdef-unwrapped.json"),
        "--service", str(FIXTURES / "mmrv-backend-service-unwrapped.json"),
        "--autoscaling", str(FIXTURES / "mmrv-backend-scalable-targets.json"),
        "--image-map", IMAGE_MAP, "--out", str(out),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert (out / "06-horizontalpodautoscaler-mmrv-backend.yaml").exists()
    (out / "notes.txt").write_text("mine")
    # without autoscaling: no HPA any more, so its file must not linger for `kubectl apply -f`
    second = run(str(FIXTURES / "mmrv-backend-taskdef-unwrapped.json"), "--image-map", IMAGE_MAP, "--out", str(out))
    assert second.returncode == 0, second.stderr
    names = sorted(p.name for p in out.iterdir())
    assert not any("horizontalpodautoscaler" in n for n in names)
    assert "notes.txt" in names  # not ours: untouched
    assert "SecretProviderClass" in (out / "report.md").read_text()


def test_multi_container_task(tmp_path: Path) -> None:
    done = run(
        str(FIXTURES / "mmrv-worker-taskdef.json"),
        "--component", "worker", "--keep-tags", "--acr", "mmrvstagingacr.azurecr.io", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    deployment = yaml.safe_load((tmp_path / "04-deployment-mmrv-worker.yaml").read_text())
    spec = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["db-migrate", "config-fetch", "otel-collector", "log-router"]
    assert spec["containers"][0]["image"] == "mmrvstagingacr.azurecr.io/mmrv-worker:2.3.1"


def test_broken_input_exits_2_naming_the_fields(tmp_path: Path) -> None:
    done = run(str(FIXTURES / "broken-taskdef.json"), "--keep-tags", "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "cannot translate, 5 problems" in done.stderr
    assert "taskDefinition.memory: 4096 MiB does not go with cpu 256 on Fargate" in done.stderr
    assert "taskDefinition.containerDefinitions[1].cpu: must be a whole number" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_unmapped_ecr_image_exits_2(tmp_path: Path) -> None:
    done = run(str(FIXTURES / "mmrv-backend-taskdef.json"), "--out", str(tmp_path))
    assert done.returncode == 2
    assert "taskDefinition.containerDefinitions[0].image: ECR image" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_files_and_flags_exit_2(tmp_path: Path) -> None:
    missing = run(str(tmp_path / "nope.json"), "--out", str(tmp_path))
    assert missing.returncode == 2 and "file not found" in missing.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    bad_json = run(str(garbage), "--out", str(tmp_path))
    assert bad_json.returncode == 2 and "line 1, column 2: not valid JSON" in bad_json.stderr
    service_as_task = run(str(FIXTURES / "mmrv-backend-service.json"), "--out", str(tmp_path))
    assert service_as_task.returncode == 2 and "not an ECS task definition" in service_as_task.stderr
    flag = run(str(FIXTURES / "mmrv-backend-taskdef.json"), "--image-map", "nonsense", "--out", str(tmp_path))
    assert flag.returncode == 2 and "--image-map 'nonsense': write FROM=TO" in flag.stderr
    usage = run(str(FIXTURES / "mmrv-backend-taskdef.json"))
    assert usage.returncode == 2 and "--out" in usage.stderr
