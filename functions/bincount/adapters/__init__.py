"""boto3 implementations of bincount.ports (the only modules here that call AWS)."""
