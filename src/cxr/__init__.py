"""cxr: pneumonia detection on pediatric chest X-rays."""

__version__ = "0.1.0"

CLASSES = ("NORMAL", "PNEUMONIA")  # label 0, label 1
