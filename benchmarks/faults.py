"""The bad-input and fault corpus (tests/fault_corpus.py) as a table: for each case the
exit code, whether a traceback was printed, whether the message names the file at
fault, and whether anything outside the data root was read.

    python benchmarks/faults.py            the hand-written corpus
    python benchmarks/faults.py --fuzz 1   the generated cases (about 470 per scale step)
    python benchmarks/faults.py --kills 3  kill -9 at 3 seeded moments of every command,
                                           then the same command again (~1 min a case)
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


def fuzz(scale):
    """Every generated case (tests/fuzz_cases.py, tests/fuzz_state_cases.py), one table
    row per class, counted as the issue counts them: traceback, hang, silent, lost,
    outside (see fuzz_state_cases' docstring)."""
    from collections import defaultdict

    import fuzz_cases as fc
    import fuzz_state_cases as fs

    by_class = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in fc.all_cases(scale):
            with tempfile.TemporaryDirectory() as case:
                by_class[name.split(" #")[0]].append(as_state(fc.run_case(name, build, case)))
        trained = fs.build_trained(Path(tmp) / "trained")
        for name, record, rng in fc.record_cases(3 * scale):
            with tempfile.TemporaryDirectory() as case:
                outcome = fc.run_record_case(name, record, rng, trained, case)
            by_class["record damaged"].append(as_state(outcome))
        for name, run in fs.all_state_cases(scale):
            with tempfile.TemporaryDirectory() as case:
                by_class[name.split(" #")[0]].append(run(trained, case))
    print("\n| generated class | cases | exit 0 | exit 2, named | " + " | ".join(fs.COUNTS) + " |")
    print("|---|" + "---:|" * (3 + len(fs.COUNTS)))
    everything = [o for group in by_class.values() for o in group]
    for name, outcomes in [*by_class.items(), ("**all**", everything)]:
        codes = [o.exit_code for o in outcomes]
        named = sum(o.exit_code == 2 and o.names_it for o in outcomes)
        counts = " | ".join(str(sum(o.count(c) for o in outcomes)) for c in fs.COUNTS)
        print(f"| {name} | {len(outcomes)} | {codes.count(0)} | {named} | {counts} |")
    failed = [o for o in everything if not o.holds]
    print(f"\n{len(everything)} cases, {len(failed)} that do not hold")
    for outcome in failed[:30]:
        print(f"FAILED {outcome}")
    return not failed


def as_state(outcome):
    """An input or record case's :class:`fuzz_cases.Outcome` on the five counts."""
    from fuzz_state_cases import StateOutcome

    code = outcome.exit_code
    return StateOutcome(
        outcome.case, code, outcome.message, outcome.names_file,
        silent=code == "dropped silently", lost=not outcome.usable_after_rerun,
        outside=outcome.outside_read,
    )  # fmt: skip


def kills(per_stage, seed=0):
    """kill -9 at seeded moments of every command (tests/kill_cases.py), then the same
    command again: is the state usable, and the same as an uninterrupted run's?"""
    import kill_cases as kc

    with tempfile.TemporaryDirectory() as tmp:
        reference = kc.reference_pipeline(Path(tmp))
        print("uninterrupted: " + ", ".join(
            f"{stage} {reference.commits[stage]} commits in {reference.seconds[stage]:.0f} s"
            for stage in reference.states))  # fmt: skip
        outcomes = []
        for k, (name, stage, moment) in enumerate(kc.kill_cases(reference, per_stage, seed)):
            outcomes.append(kc.run_kill_case(name, stage, moment, reference, Path(tmp) / f"k{k}"))
            print(f"{name}: killed exit {outcomes[-1].killed_exit}", flush=True)
    print("\n| case | killed run's exit | rerun's exit | traceback? | state usable after "
          "the rerun? | same as uninterrupted? |")  # fmt: skip
    print("|---|---:|---:|---|---|---|")
    yes = {True: "yes", False: "no"}
    for o in outcomes:
        print(f"| {o.case} | {o.killed_exit} | {o.rerun_exit} | {yes[o.traceback]} | "
              f"{yes[o.usable]} | {yes[o.same_as_uninterrupted]} |")  # fmt: skip
    failed = [o for o in outcomes if not o.holds]
    print(f"\n{len(outcomes)} kills: {len(failed)} not repaired by running the command again")
    for o in failed:
        print(f"FAILED {o}")
    return not failed


if __name__ == "__main__":
    if "--kills" in sys.argv:  # python benchmarks/faults.py --kills [PER_STAGE]
        rest = sys.argv[sys.argv.index("--kills") + 1 :]
        sys.exit(0 if kills(int(rest[0]) if rest else 1) else 1)
    if "--fuzz" in sys.argv:  # python benchmarks/faults.py --fuzz [SCALE]
        rest = sys.argv[sys.argv.index("--fuzz") + 1 :]
        sys.exit(0 if fuzz(int(rest[0]) if rest else 1) else 1)
    main()
