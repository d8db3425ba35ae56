"""A small flow with an approval gate before a "production change", for the gate's tests.

`python -m tests.approval_flows MARKER TIMEOUT_SECONDS TIME_SCALE` runs it against
PREFECT_API_URL (the browser test does, against its own `prefect server start`) and prints
the outcome as the last line: `outcome <approved|rejected|...> <production changed: yes|no>`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.context import get_run_context

from flows.approval import approval_gate, refusal_state
from migration.approval import ApprovalRefused, Decision
from migration.spec import Approvals, load_spec

SPEC_PATH = Path(__file__).resolve().parent.parent / "deployments" / "mmrv.yaml"
APPROVERS = ["alice", "bob"]
REQUEST = "## Approval needed: production\n\nplatform [production]: 1 to create\n\n- create `rg-mmrv-prod`\n"

PRODUCTION_CHANGES: list[str] = []  # markers of the runs whose production step ran (this process)
RUN_IDS: dict[str, str] = {}  # marker -> flow run id


@task
def change_production(marker: str) -> str:
    PRODUCTION_CHANGES.append(marker)
    return marker


@flow(name="approval-gate-test", flow_run_name="gate-{marker}")
def gated_flow(marker: str, timeout_seconds: int = 86_400, time_scale: float = 1.0, auto_approve: bool = False) -> Any:
    RUN_IDS[marker] = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    spec = load_spec(SPEC_PATH).model_copy(
        update={"approvals": Approvals(approvers=APPROVERS, timeout_seconds=timeout_seconds)}
    )
    decision = approval_gate(spec, "production", REQUEST, auto_approve=auto_approve, time_scale=time_scale)
    if not decision.go:
        return refusal_state(decision)
    change_production(marker)
    return decision


def main(argv: list[str]) -> int:
    marker, timeout, scale = argv[0], int(argv[1]), float(argv[2])
    try:
        result: Any = gated_flow(marker=marker, timeout_seconds=timeout, time_scale=scale)
        decision: Decision = result
    except ApprovalRefused as exc:
        decision = exc.decision
    changed = "yes" if marker in PRODUCTION_CHANGES else "no"
    print(f"outcome {decision.outcome} {decision.approver} production-changed:{changed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
