"""The bad-input and fault corpus (tests/fault_corpus.py) as a table: for each case the
exit code, whether a traceback was printed, whether the message names the file at
fault, and whether anything outside the data root was read.

    python benchmarks/faults.py
"""

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fault_corpus import CASES, run_case  # noqa: E402


def main():
    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run_case(case, tmp))
        print(f"{case.name}: exit {rows[-1]['exit code']}", flush=True)
    print("\n| case | exit code (expected) | traceback? | file named? | message |")
    print("|---|---:|---|---|---|")
    for r in rows:
        message = r["message"].replace("|", "/") or "(exit 0)"
        print(
            f"| {r['case']} | {r['exit code']} ({r['expected']}) | "
            f"{'yes' if r['traceback'] else 'no'} | {'yes' if r['file named'] else 'no'} "
            f"| {message} |"
        )
    print(
        f"\n{len(rows)} cases: {sum(r['traceback'] for r in rows)} tracebacks, "
        f"{sum(r['exit code'] != r['expected'] for r in rows)} unexpected exit codes, "
        f"{sum(not r['file named'] for r in rows)} messages not naming the file, "
        f"{sum(r['read outside root'] for r in rows)} reads outside the data root"
    )


if __name__ == "__main__":
    main()
