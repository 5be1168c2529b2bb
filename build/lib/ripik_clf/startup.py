"""A quiet start: TensorFlow's C++ start-up lines kept off the console.

TensorFlow writes them from C++ before its logging is set up (absl's "All log messages
before absl::InitializeLog()", oneDNN, the CUDA probing that fails on a CPU machine with
"failed call to cuInit"), so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them. The one way is to
point the process's stderr at /dev/null while TensorFlow loads and looks for devices.
``--verbose`` (``RIPIK_VERBOSE=1``) keeps them.
"""

import os
import sys

VERBOSE = "RIPIK_VERBOSE"


def quiet_tensorflow():
    """Import TensorFlow and list its devices with stderr silenced (once per process)."""
    if "tensorflow" in sys.modules or os.environ.get(VERBOSE):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe logs here
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def show_config(config, verbose, saved_to=None):
    """The resolved config: printed with ``--verbose``, else one line saying where it is
    saved (every run folder keeps its own ``config.yaml``)."""
    if verbose:
        print(config.dump(), end="\n\n")
    elif saved_to:
        print(f"config: resolved and saved with the run ({saved_to}; --verbose prints it)")
