"""``ripik``: every command of ripik_clf under one name (the console script pip installs).

ripik fit photos/train --test photos/test --out submission.csv   # the whole pipeline
ripik augment --data photos/train          # = python augment_offline.py
ripik train --phase head                   # = python train.py --phase head (then full)
ripik ensemble --test photos/test --out submission.csv   # = python ensemble.py
ripik predict photo.jpg | export | audit | runs          # = python -m ripik_clf ...
(each command's own --help lists its flags)
"""

import sys
import textwrap

from ripik_clf.version import __version__

COMMANDS = {
    "fit": "the recommended pipeline, photos to submission, in one command (resumable)",
    "augment": "offline copies of the training photos (augment_offline.py)",
    "train": "train a phase: --phase head | probe | full (train.py)",
    "ensemble": "soft-vote the trained models into a submission and report (ensemble.py)",
    "predict": "top-k classes for images or folders",
    "export": "SavedModel, TFLite or ONNX, checked",
    "audit": "a data audit: duplicates, leaks, label errors",
    "runs": "the table of runs",
}


def usage():
    lines = [__doc__.strip().splitlines()[0], "", "usage: ripik COMMAND [--help] ...", ""]
    lines += [f"  {name:<9} {what}" for name, what in COMMANDS.items()]
    examples = textwrap.dedent(__doc__.split("\n", 2)[2]).strip()
    lines += [
        "",
        "  --version  print the version",
        "",
        "examples:",
        textwrap.indent(examples, "  "),
    ]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] == "--version":
        print(f"ripik {__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"ripik: unknown command {command!r}; one of: {', '.join(COMMANDS)}",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    _run(command, rest)


def _run(command, argv):
    from ripik_clf.cli import augment, ensemble, train
    from ripik_clf.cli import main as python_m

    sys.argv[0] = f"ripik {command}"  # argparse's usage lines name the command
    if command == "fit":
        return fit_main(argv)
    if command == "augment":
        return augment.script_main(argv)
    if command == "train":
        return train.train_main(argv)
    if command == "ensemble":
        return ensemble.script_main(argv)
    return python_m.main([command, *argv])


def fit_main(argv=None):
    from ripik_clf.cli import fit as fit_module
    from ripik_clf.errors import exit_on_user_error

    exit_on_user_error(fit_module.fit)(parse(["fit", *(argv or [])]))


def parse(argv):
    """The flags of ``ripik COMMAND ...`` parsed as that command would, nothing run (the
    README's test checks every command line it shows with it)."""
    from ripik_clf.cli import augment, ensemble, fit, train
    from ripik_clf.cli import main as python_m
    from ripik_clf.cli.common import make_parser

    command, rest = argv[0], argv[1:]
    if command == "fit":
        parser = make_parser(fit.__doc__.splitlines()[0], epilog=fit.__doc__.split("\n", 1)[1])
        fit.add_fit_args(parser)
        return parser.parse_args(rest)
    if command == "augment":
        return augment.parse_args(rest, augment.DOC)
    if command == "train":
        return train.build_parser(*train.doc_parts(train.TRAIN_DOC), True).parse_args(rest)
    if command == "ensemble":
        return ensemble.parse_args(rest, ensemble.DOC)
    return python_m.parse_args([command, *rest])


if __name__ == "__main__":
    main()
