"""Train the configured models: --phase head (frozen backbone), then --phase full (= ``ripik
train``; the code lives in ``ripik_clf/cli/train.py``). ``python train.py --help`` lists the
flags."""

from ripik_clf.cli.train import train_main as main

if __name__ == "__main__":
    main()
