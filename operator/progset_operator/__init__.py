"""progset-operator: renders ProgramSet resources into the config progset-supervisor consumes."""
