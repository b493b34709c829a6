"""A run folder on disk: the files a training writes (`folder`), what it says about its model (`info.RunInfo`,
model.json), how it trained (`record.TrainingRecord`, training.json), how it did (`results`: metrics.json,
stress.json and stress_val.json, evidence.json; `site_check_result`: site_check.json) and the settings it was
trained with (`settings`). Each file has one typed reader and writer here."""
