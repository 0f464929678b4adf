"""`python -m stages <command>`: one thin module per pipeline stage."""
