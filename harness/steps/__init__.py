"""The steps of a monitored run, in order (harness/monitor.py lists them); each module holds one
job and works on the run's live state (state.py)."""
