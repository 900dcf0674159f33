"""`python -m flanlab` = the `flanlab` command."""
from .cli import app

app()
