"""The cross-backend matrix: every spec x every requested backend x a dense and a conv shape,
and every fan-based spec on a multi-axis attention kernel (a (64, 8, 32) query projection,
stated with ``mi.with_axes`` in each backend's own layout), each drawn through the backend's
public compiled form and checked against the analytic law and an independent NumPy reference
draw (see multiinit.stats for the thresholds: every check at level 1e-6; n = 32,768, 18,432
and 16,384 values per cell).

Each env records its cells; with MULTIINIT_RESULTS set (tox sets it) they are written to
``$MULTIINIT_RESULTS/matrix-<backend>.json`` for ``multiinit report``.
"""

from __future__ import annotations

import pytest

from conftest import REQUESTED, record_result
from matrix import cells, failure_message, run_cell

CELLS = cells(REQUESTED)


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_cell(cell) -> None:
    record = run_cell(cell)
    record_result("matrix", cell.backend, record)
    assert record["verdict"] == "pass", failure_message(record)
