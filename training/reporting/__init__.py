"""What a run reports: counting metrics and baselines, the report files, their PNG figures."""
