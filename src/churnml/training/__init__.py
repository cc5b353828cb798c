"""Training: out-of-time splits and folds, the candidates and their tuning, calibration, evaluation, and
tracking and registering the model in MLflow."""
