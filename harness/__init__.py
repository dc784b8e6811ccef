"""harness: evaluation-first supervised fine-tuning of small language models.

From Python: `evaluate` models on suites into a `Run` (typed `Sample`s, pandas tables, paired
comparisons, reports), `load_run` a run folder, `gate` a run against a baseline, and build
suites in code with `Suite.from_dict`. The command line (`harness run ...`) makes the same files.
"""

__version__ = "0.1.0"

from .api import Run, evaluate, gate, load_run  # noqa: E402
from .errors import HarnessError, InputError  # noqa: E402
from .sample import Sample  # noqa: E402
from .suites import Suite  # noqa: E402

__all__ = [
    "HarnessError",
    "InputError",
    "Run",
    "Sample",
    "Suite",
    "__version__",
    "evaluate",
    "gate",
    "load_run",
]
