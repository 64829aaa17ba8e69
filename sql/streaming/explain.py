"""What `EXPLAIN CREATE MATERIALIZED VIEW …` / `EXPLAIN INSERT INTO … SELECT …` shows of a job
(docs/DESIGN.md §8, issue 17): how it runs — stateless, windowed, or a window join — and the
state it keeps, then the DataFusion SQL it runs when windows close. The same two columns as
DataFusion's EXPLAIN (plan_type, plan), so a client shows both alike."""

from __future__ import annotations

import pyarrow as pa

from streamhouse.sql.streaming.continuous import ContinuousPlan
from streamhouse.sql.streaming.interval_plan import IntervalPlan
from streamhouse.sql.streaming.join_plan import JoinPlan
from streamhouse.sql.streaming.partials import partials_for

__all__ = ["explain_job", "job_description"]


def job_description(plan: ContinuousPlan) -> str:
    """The job's kind and state, one line each."""
    if isinstance(plan, JoinPlan | IntervalPlan):
        return plan.describe()
    spec = plan.window
    source = f"source {plan.topic}"
    if spec is None:
        return f"stateless: filter / projection of each micro-batch of {source}; state: none"
    shape = f"{spec.kind} size {spec.size_ms} ms" + (
        "" if spec.kind in ("TUMBLE", "SESSION") else f" step {spec.step_ms} ms"
    )
    lines = [f"window: {shape} over {source}, fired when the watermark (min over its partitions) passes window_end"]
    if partials_for(plan) is not None:
        lines.append(f"state {plan.topic}: one row of partial aggregates per pane and key of open windows")
    else:
        lines.append(
            f"state {plan.topic}: rows of open windows ({', '.join(plan.columns)}), "
            "dropped when their last window fires"
        )
    return "\n".join(lines)


def explain_job(plan: ContinuousPlan) -> pa.Table:
    """EXPLAIN of a job: the kind and state ("job"), then the SQL run per firing ("query")."""
    return pa.table(
        {
            "plan_type": ["job", "query"],
            "plan": [job_description(plan), plan.query_sql],
        }
    )
