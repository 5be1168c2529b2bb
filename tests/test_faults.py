"""Every case of the fault corpus: the expected exit code, one line naming the file at
fault, no traceback, nothing read from outside the data root."""

import pytest

from fault_corpus import CASES, run_case

pytestmark = pytest.mark.slow  # 17 child processes, ~2 min: `make test-slow` (and CI) run it


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_case(case, tmp_path):
    result = run_case(case, tmp_path)
    assert not result["traceback"], result
    assert result["exit code"] == case.exit_code, result
    assert result["file named"], result
    assert not result["read outside root"], result
