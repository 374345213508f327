"""The Redis store of customer state: key layout and the atomic apply step."""
