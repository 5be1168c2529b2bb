"""Train the configured models: --phase head (frozen backbone), then --phase full.

Examples:
    python train.py --phase head                 # both models: original and augmented
    python train.py --phase full --model augmented --epochs 5 --lr 1e-5
    python train.py --phase head --backbone efficientnetb0 --weights none --image-size 128
    python train.py --phase probe                # logistic regression on the cached features
    python train.py --phase features --shard 2/4 # a quarter of the features, on machine 2

Writes WORKDIR/runs/<model>/: head.keras, full.keras or probe.keras (complete models taking raw
0-255 RGB), metrics.json, history_<phase>.csv, run.json, config.yaml.
"""

from ripik_clf.cli.train import build_parser, run_phase
from ripik_clf.errors import exit_on_user_error


@exit_on_user_error
def main(argv=None):
    args = build_parser(__doc__.splitlines()[0], __doc__.split("\n", 2)[2], True).parse_args(argv)
    run_phase(args, args.phase)


if __name__ == "__main__":
    main()
