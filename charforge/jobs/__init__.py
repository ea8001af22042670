"""Batch regeneration over the jobs table: plan one job per asset, then run them (locally or on Ray).

    result = regenerate(forge, Request(None, label_set("sillytavern"), (0.5, 1.0)))

Resumable (rerun the same request after a crash: finished assets are skipped, held jobs released),
idempotent (an asset stored for the same identity, state, model and parameters is never redrawn), and
batched (the pictures of one character are denoised `batch` states per UNet call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from charforge.errors import InvalidInput
from charforge.jobs.plan import Plan, PlannedAsset, Request, parse_intensities, plan
from charforge.jobs.run import OnResult, Summary, outcome

__all__ = ["BACKENDS", "Plan", "PlannedAsset", "Request", "RegenerateResult", "parse_intensities", "plan",
           "regenerate"]  # fmt: skip

BACKENDS = ("local", "ray")
DEFAULT_BATCH = 8  # states per UNet call; see benchmarks/bench_regenerate.py
_COUNTS = ("rendered", "reused", "failed", "open")


@dataclass(frozen=True)
class RegenerateResult:
    plan: Plan
    summary: Summary
    outcome: dict[str, dict[str, int]]  # per character, from the job rows of this run

    def to_dict(self) -> dict[str, Any]:
        cached: dict[str, int] = {}
        for item in self.plan.items:
            cached[item.character] = cached.get(item.character, 0) + item.cached
        return {
            "assets": len(self.plan.items),
            "cached": sum(cached.values()),
            "rendered": self.summary.rendered,
            "reused": self.summary.reused,
            "failed": self.summary.failed,
            "seconds": round(self.summary.seconds, 3),
            "characters": {name: {"cached": n, **self.outcome.get(name, dict.fromkeys(_COUNTS, 0))}
                           for name, n in cached.items()},  # fmt: skip
            "errors": self.summary.errors,
        }


def regenerate(
    forge: Any,
    request: Request,
    *,
    backend: str = "local",
    workers: int = 1,
    batch: int = DEFAULT_BATCH,
    address: str | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_result: OnResult | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RegenerateResult:
    """Plan `request` (one job row per asset) and run what is not stored yet."""
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if workers < 1 or batch < 1:
        raise InvalidInput(f"workers and batch must be at least 1, got {workers} and {batch}")
    planned = plan(forge, request)
    if on_plan:
        on_plan(planned)
    todo = planned.todo
    if not todo:
        return RegenerateResult(planned, Summary(), {})
    if backend == "ray":
        from charforge.jobs.ray_backend import run_ray

        summary = run_ray(forge, todo, batch=batch, workers=workers, address=address, on_progress=on_progress)
    else:
        from charforge.jobs.local import run_local

        summary = run_local(forge, todo, batch=batch, workers=workers, on_result=on_result, on_progress=on_progress)
    return RegenerateResult(planned, summary, outcome(forge, todo))
