"""The exceptions `cxr` raises: one hierarchy, so a caller catches every expected failure with one class.

Library code raises these; only the command line (cxr.cli) turns them into a one-line message and an
exit status. A Ray actor, the web service or a notebook that imports `cxr` gets an ordinary exception.
"""


class CxrError(Exception):
    """An expected failure with a message for the user (bad input, missing file, wrong setting)."""


class UsageError(CxrError):
    """Settings or arguments that do not fit together (unknown model, size too small, missing --out)."""


class DataError(CxrError):
    """A data folder or file that cannot be used as given."""


class RunError(CxrError):
    """A run folder, or a file in it, that is missing, damaged or refuses to load."""
