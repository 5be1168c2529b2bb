"""Fine-tune every layer but BatchNorm at a low learning rate (= ``train.py --phase full``;
the code lives in ``ripik_clf/cli/train.py``). ``python finetune.py --help`` lists the
flags."""

from ripik_clf.cli.train import finetune_main as main

if __name__ == "__main__":
    main()
