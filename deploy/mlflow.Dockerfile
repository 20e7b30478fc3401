# MLflow's image plus the PostgreSQL driver and boto3 (S3) the team server needs.
# Pin MLFLOW_IMAGE to the mlflow version the machines under test run (pip show mlflow).
ARG MLFLOW_IMAGE=ghcr.io/mlflow/mlflow:latest
FROM ${MLFLOW_IMAGE}
RUN pip install --no-cache-dir psycopg2-binary boto3
