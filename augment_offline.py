"""Grow the training split about 15x (= ``ripik augment``; the code lives in
``ripik_clf/cli/augment.py``). ``python augment_offline.py --help`` lists the flags."""

from ripik_clf.cli.augment import script_main as main

if __name__ == "__main__":
    main()
