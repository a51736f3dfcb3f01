"""Training, tuning and evaluation of the counting model (data prep, train.py, launcher, evaluate)."""
