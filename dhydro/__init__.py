"""The ``dhydro`` command line and the main job: the top layer, above ``bmi_dhydro`` (the model and its BMI) and
``coupler`` (coupled runs), which never import it."""
