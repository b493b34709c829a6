"""cxr: pneumonia detection on pediatric chest X-rays."""

import os

# numpy asks the kernel for transparent huge pages for every array over 4 MB. Where the kernel then compacts
# memory on each first touch (THP defrag "madvise", common on virtual machines), filling a fresh 85 MB array
# took 0.6-0.9 s instead of 0.04 s on a 2-core VM, and without huge pages `make demo` ran no slower
# (BENCHMARKS.md). numpy reads this when it is first imported: here, before any cxr module imports it; a
# user's own earlier `import numpy` keeps its setting.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

__version__ = "0.1.0"

CLASSES = ("NORMAL", "PNEUMONIA")  # label 0, label 1
