"""`python -m stages <command>`: one thin module per pipeline stage.

Stage modules never import one another (tests/test_dvc_deps.py): what several stages share lives in
the helper modules common.py, params.py, errors.py, inputs.py and modelling.py, or in ssu_model/."""
