"""Lightning tasks: one LightningModule per task type (recognition; spotting later)."""
