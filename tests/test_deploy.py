"""The deployment files hold together: the compose file parses and wires MLflow to PostgreSQL and S3 the way
``deploy/team-server.sh`` does (which tests/test_team_server.py runs for real), and every variable the compose
file needs is in ``deploy/env.example``. No image can be pulled here, so the compose stack itself is not
started; its pieces are the same programs the no-Docker script starts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_compose_file_wires_mlflow_to_postgres_and_s3() -> None:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == {"postgres", "minio", "bucket", "mlflow"}
    mlflow = services["mlflow"]
    command = " ".join(mlflow["command"])
    assert "--backend-store-uri \"postgresql://mlflow:$$MLFLOW_DB_PASSWORD@postgres:5432/mlflow\"" in command
    assert "--artifacts-destination \"s3://$$S3_BUCKET/\"" in command  # proxied: clients need no S3 keys
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert mlflow["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                    "bucket": {"condition": "service_completed_successfully"}}
    assert "ports" not in services["postgres"] and "ports" not in services["minio"]  # only MLflow is exposed
    assert (DEPLOY / mlflow["build"]["dockerfile"]).is_file()


def test_env_example_covers_every_compose_variable() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    example = {line.split("=", 1)[0] for line in (DEPLOY / "env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert used <= example, f"missing from deploy/env.example: {sorted(used - example)}"


def test_team_server_script_parses_and_prints_usage() -> None:
    script = DEPLOY / "team-server.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "team-server.sh start" in done.stdout and "S3_ENDPOINT" in done.stdout
