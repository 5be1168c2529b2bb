"""Fine-tune every layer but BatchNorm at a low learning rate (= train.py --phase full).

Example:
    python finetune.py --model augmented --epochs 10 --lr 1e-5

Needs WORKDIR/runs/<model>/head.keras from `train.py --phase head`; writes full.keras,
history_full.csv and the "full" entry of metrics.json. Resumes after an interruption.
"""

from ripik_clf.cli.train import build_parser, run_phase
from ripik_clf.errors import exit_on_user_error


@exit_on_user_error
def main(argv=None):
    args = build_parser(__doc__.splitlines()[0], __doc__.split("\n", 2)[2], False).parse_args(argv)
    run_phase(args, "full")


if __name__ == "__main__":
    main()
