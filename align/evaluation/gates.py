"""Gates: a stage's `gate:` conditions ('METRIC OP NUMBER') on its own metrics and its evaluation row.

A failed gate keeps the artifact, marks it (`gate.json`, manifest status `failed_gate`) and stops the
pipeline with the metric, its value and the bound (`GateFailed`, raised by `table.RunEvaluations`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

from align.errors import AlignError
from align.recipe import parse_gate

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt,
                                                   "<": operator.lt, "==": operator.eq, "!=": operator.ne}


def check_gates(gates: Sequence[str], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Each gate with its metric's value and whether it passed; a metric nobody measured is an error."""
    out = []
    for text in gates:
        name, op, bound = parse_gate(text)
        if name not in metrics:
            known = ", ".join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float))))
            raise AlignError(f"gate '{text}': no metric named {name}", hint=f"measured metrics: {known}")
        value = float(metrics[name])
        out.append({"gate": text, "metric": name, "op": op, "bound": bound, "value": value,
                    "passed": not math.isnan(value) and _OPS[op](value, bound)})
    return out


class GateFailed(AlignError):
    def __init__(self, message: str, failed: list[dict[str, Any]], hint: str):
        super().__init__(message, hint=hint)
        self.failed = failed
