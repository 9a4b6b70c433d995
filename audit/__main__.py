"""`python -m onegc.audit` is `onegc-audit` (sweeps and Slurm jobs call it this way)."""

from onegc.audit.cli import main

main()
