"""promtool unit tests of the rule pack (*.test.yml) and the processes the alerting tests run."""
