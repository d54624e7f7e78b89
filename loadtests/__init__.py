"""Load tests, the comparison runner and its report."""
