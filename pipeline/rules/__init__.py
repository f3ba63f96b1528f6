"""The rule engine: pure, event-time functions of (state, input) -> (state, outputs)."""
