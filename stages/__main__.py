from stages.cli import app

app(prog_name="python -m stages")
