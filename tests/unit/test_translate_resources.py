"""CPU and memory: Fargate units and sizes, container shares -> requests and limits."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migration.translate.resources import (
    FARGATE_SIZES,
    ContainerSize,
    container_resources,
    cpu_quantity,
    fargate_problem,
    parse_task_cpu,
    parse_task_memory,
)
from tests.unit.test_translate_fixtures import container, k8s_container, problems, task, translate


@pytest.mark.parametrize(
    ("value", "units"),
    [("256", 256), ("1024", 1024), (512, 512), ("0.25 vCPU", 256), ("1 vcpu", 1024), ("2vCPU", 2048), ("x", None)],
)
def test_task_cpu_units(value: Any, units: int | None) -> None:
    assert parse_task_cpu(value) == units


@pytest.mark.parametrize(
    ("value", "mib"), [("512", 512), (2048, 2048), ("1 GB", 1024), ("0.5GB", 512), ("2gb", 2048), (True, None)]
)
def test_task_memory_mib(value: Any, mib: int | None) -> None:
    assert parse_task_memory(value) == mib


def test_every_documented_fargate_size_is_valid_and_its_neighbours_are_not() -> None:
    for cpu, memories in FARGATE_SIZES.items():
        for memory in memories:
            assert fargate_problem(cpu, memory) is None
        assert fargate_problem(cpu, memories[0] - 512) is not None
        assert fargate_problem(cpu, memories[-1] + 1024) is not None
    assert len(FARGATE_SIZES[2048]) == 13  # 4 to 16 GB in 1 GB steps
    assert FARGATE_SIZES[8192][:2] == (16384, 20480)  # 4 GB steps from 16 GB
    assert FARGATE_SIZES[16384][-1] == 122880  # up to 120 GB in 8 GB steps


@pytest.mark.parametrize(
    ("cpu", "memory", "field", "message"),
    [
        (
            "256",
            "4096",
            "memory",
            "4096 MiB does not go with cpu 256 on Fargate; allowed with cpu 256: 512, 1024, 2048",
        ),
        ("2048", "3072", "memory", "allowed with cpu 2048: 4096 to 16384 in steps of 1024"),
        ("300", "1024", "cpu", "300 CPU units is not a Fargate task size"),
        ("lots", "1024", "cpu", "'lots' is not CPU units"),
        ("512", "1 TB", "memory", "'1 TB' is not MiB"),
    ],
)
def test_invalid_fargate_sizes_name_the_field(cpu: str, memory: str, field: str, message: str) -> None:
    (problem,) = problems(task(cpu=cpu, memory=memory))
    assert problem.startswith(f"taskDefinition.{field}: ")
    assert message in problem


def test_fargate_needs_a_task_size() -> None:
    td = task()
    del td["cpu"], td["memory"]
    assert problems(td) == [
        "taskDefinition.cpu: required for a Fargate task definition, but missing",
        "taskDefinition.memory: required for a Fargate task definition, but missing",
    ]


def test_cpu_quantities() -> None:
    assert [cpu_quantity(u) for u in (256, 512, 1024, 2048, 100, 1)] == ["250m", "500m", "1000m", "2000m", "98m", "1m"]


def test_container_shares_of_a_fargate_task() -> None:
    result = translate(
        task(
            container("app", cpu=512, memory=1536, memoryReservation=1024),
            container("helper", essential=False, memoryReservation=256),
            container("tiny", essential=False),
            cpu="1024",
            memory="2048",
        )
    )
    assert k8s_container(result, "app")["resources"] == {
        "requests": {"cpu": "500m", "memory": "1024Mi"},  # its cpu, its soft limit
        "limits": {"cpu": "1000m", "memory": "1536Mi"},  # may burst to the task cpu; its hard limit
    }
    assert k8s_container(result, "helper")["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},  # half the cpu the task has left
        "limits": {"cpu": "1000m", "memory": "2048Mi"},  # no hard limit: the task memory
    }
    assert k8s_container(result, "tiny")["resources"] == {
        "requests": {"cpu": "250m", "memory": "768Mi"},  # what the others did not reserve
        "limits": {"cpu": "1000m", "memory": "2048Mi"},
    }


def test_ec2_task_without_task_size_uses_container_values() -> None:
    td = task(container("app", cpu=256, memory=512), requiresCompatibilities=["EC2"])
    del td["cpu"], td["memory"]
    result = translate(td)
    assert k8s_container(result, "app")["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"memory": "512Mi"},
    }
    bare = task(container("app"), requiresCompatibilities=["EC2"])
    del bare["cpu"], bare["memory"]
    result = translate(bare)
    assert "resources" not in k8s_container(result, "app")
    assert any("BestEffort" in i.outcome for i in result.report)


@pytest.mark.parametrize(
    ("containers", "field", "message"),
    [
        (
            [container("a", cpu=768), container("b", cpu=512)],
            "containerDefinitions",
            "[0].cpu 768 + [1].cpu 512 = 1280",
        ),
        (
            [container("a", memory=2048)],
            "containerDefinitions[0].memory",
            "2048 MiB is more than the task's memory 1024",
        ),
        (
            [container("a", memoryReservation=700), container("b", memory=512)],
            "containerDefinitions",
            "reserve 1212 MiB",
        ),
        ([container("a", memory=256, memoryReservation=512)], "containerDefinitions[0].memoryReservation", "above"),
        ([container("a", memory=4)], "containerDefinitions[0].memory", "below the minimum 6"),
        ([container("a", cpu=-1)], "containerDefinitions[0].cpu", "below the minimum 0"),
        ([container("a", cpu="lots")], "containerDefinitions[0].cpu", "must be a whole number"),
    ],
)
def test_container_sizes_that_do_not_fit_name_the_field(
    containers: list[dict[str, Any]], field: str, message: str
) -> None:
    (problem,) = problems(task(*containers))
    assert problem.startswith(f"taskDefinition.{field}: ")
    assert message in problem


sizes = st.lists(
    st.builds(
        ContainerSize,
        cpu=st.none() | st.integers(1, 512),
        memory=st.none() | st.integers(6, 512),
        reservation=st.none() | st.integers(6, 256),
    ),
    min_size=1,
    max_size=5,
)


@given(sizes, st.sampled_from([(512, 1024), (1024, 2048), (4096, 8192)]))
def test_requests_never_exceed_limits(containers: list[ContainerSize], task_size: tuple[int, int]) -> None:
    cpu, memory = task_size

    def amount(value: str) -> float:
        return float(value[:-1]) if value.endswith("m") else float(value[:-2])

    for resources in container_resources(containers, cpu, memory):
        for kind in ("cpu", "memory"):
            if kind in resources.get("requests", {}):
                assert amount(resources["requests"][kind]) <= amount(resources["limits"][kind])
