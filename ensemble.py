"""Average the trained models' softmaxes (+ TTA) into submission.csv and a report.

Examples:
    python ensemble.py --out submission.csv
    python ensemble.py --out submission.csv --test data/test --tta d4
    python ensemble.py --out sub.csv --members original augmented --member-weights 1 2
    python ensemble.py --out sub.csv --members work/runs/augmented/full.keras
    python ensemble.py --out sub.csv --members original original:probe augmented

Writes the submission (one row per test image, sorted; columns image_id,label), beside it
<out>_probabilities.csv (e.g. submission_probabilities.csv: each class's probability) and,
when images were skipped, <out>_skipped.csv; and WORKDIR/report/: report.md,
reliability.png, hardest.png, confusion_<model>.png (validation split; test too when an
answer key exists).
"""

from ripik_clf.cli import ensemble
from ripik_clf.errors import exit_on_user_error


@exit_on_user_error
def main(argv=None):
    ensemble.main(argv, __doc__)


if __name__ == "__main__":
    main()
