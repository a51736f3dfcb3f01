"""Training, tuning and retraining on SageMaker: the launcher, its pure policy, request capture, images."""
