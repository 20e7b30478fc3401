"""The pytest-hwbench dashboard (optional extra ``dashboard``): a Plotly Dash app over an MLflow server.

A separate package on purpose: the pytest plugin never imports it, so a machine under test needs neither
Dash nor Plotly. ``data`` is the data layer (plain functions), ``figures`` the Plotly figures, ``app`` the
Dash app started by ``hwbench dashboard --mlflow URI``.
"""
