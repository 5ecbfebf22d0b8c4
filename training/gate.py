"""The champion gate: does a newly registered version replace the champion?"""

from __future__ import annotations

import numpy as np

from models.registry import ModelRegistry


def champion_gate(
    registry: ModelRegistry, version: int, champion: int | None, metric: str
) -> tuple[bool, str]:
    """Promote `version` when its `metric` beats the champion's by more than the noise of the two
    tests (two standard errors of the difference, where both logged one)."""
    new = registry.metric(version, metric)
    if champion is None:
        return True, f"no champion yet: v{version} ({metric}={new}) becomes champion"
    old = registry.metric(champion, metric)
    if new is None:
        return False, f"v{version} has no {metric}: champion v{champion} kept"
    if old is not None and new <= old:
        return (
            False,
            f"v{version} {metric}={new:.4f} does not beat champion v{champion} ({old:.4f}): kept",
        )
    base, _, k = metric.rpartition("_at_")
    errors = [registry.metric(v, f"{base}_stderr_at_{k}") for v in (version, champion)]
    if old is not None and base and None not in errors:
        first, second = (e or 0.0 for e in errors)
        noise = 2.0 * float(np.sqrt(first**2 + second**2))
        if new - old <= noise:
            return False, (
                f"v{version} {metric}={new:.4f} against champion v{champion} ({old:.4f}): the "
                f"difference is within the noise of the tests (+/-{noise:.4f}, two standard "
                f"errors): the gate does not decide, champion kept (`omnirec promote {version}` "
                "to override)"
            )
    return True, f"v{version} {metric}={new:.4f} beats champion v{champion} ({old})"
