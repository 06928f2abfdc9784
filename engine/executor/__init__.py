"""Plans (topological order, buffer liveness, arena reuse per input shapes) and running them."""

from engine.executor.plan import Plan, build_plan

__all__ = ["Plan", "build_plan"]
