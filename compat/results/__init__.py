"""Where verdicts are judged: the result model (compat/v1), classification, comparison, the gate."""
