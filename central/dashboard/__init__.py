"""The central's web dashboard for the federation's administrators (sign-in, workstations, runs, models, audit)."""
