"""Grow the training split about 15x with the reference Albumentations recipe.

Example:
    python augment_offline.py --data data/train --copies 14 --size 512

Writes WORKDIR/splits.csv (made once, reused), and under WORKDIR/augmented/:
<class>/<stem>__aug<k>.jpg, manifest.csv (source,path,label,copy), skipped.csv
(every unusable file and why), settings.json and the resolved config.yaml.
Only training images are augmented; a rerun skips finished copies.
"""

from ripik_clf.cli import augment
from ripik_clf.errors import exit_on_user_error


@exit_on_user_error
def main(argv=None):
    augment.main(argv, __doc__)


if __name__ == "__main__":
    main()
