"""A run folder on disk: the files a training writes (`folder`) and the settings it was trained with (`settings`)."""
