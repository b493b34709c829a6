"""A run folder on disk: the files a training writes (`folder`), what it says about its model (`info.RunInfo`,
model.json), how it trained (`record.TrainingRecord`, training.json) and the settings it was trained with
(`settings`)."""
