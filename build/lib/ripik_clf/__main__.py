"""``python -m ripik_clf predict|export|audit`` (see :mod:`ripik_clf.cli.main`)."""

from ripik_clf.cli.main import main

if __name__ == "__main__":
    main()
