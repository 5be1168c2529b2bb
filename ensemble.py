"""Average the trained models' softmaxes into submission.csv and a report (= ``ripik
ensemble``; the code lives in ``ripik_clf/cli/ensemble.py``). ``python ensemble.py --help``
lists the flags."""

from ripik_clf.cli.ensemble import script_main as main

if __name__ == "__main__":
    main()
