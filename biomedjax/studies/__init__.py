"""Studies beyond a run's metrics: Grad-CAM, the IU-Xray multilabel study, embedding separability."""
