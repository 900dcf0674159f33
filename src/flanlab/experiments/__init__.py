"""End-to-end runs (mix -> train -> eval), scaling sweeps and reports."""
