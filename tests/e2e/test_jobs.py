"""Jobs and CronJobs on real Docker: completions with a parallelism cap, backoffLimit, activeDeadlineSeconds,
and a CronJob's run; with `corral get jobs`, `corral logs job/NAME` and `corral wait`.

The back-off between retries is Kubernetes' (10 s, then 20 s), so the backoffLimit test takes about
40 s, and the CronJob test waits for the next minute: both are marked slow.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until
from tests.e2e.test_agent_docker import IMAGE, apply

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def job(name: str, command: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "work", "image": IMAGE, "command": ["sh", "-c", command]}],
                }
            },
            **spec,
        },
    }


def get_json(cli: Cli, *args: str) -> dict[str, Any]:
    result = cli.run("get", *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def condition(doc: dict[str, Any], type_: str) -> str | None:
    for c in doc.get("status", {}).get("conditions", []):
        if c["type"] == type_ and c["status"] == "True":
            return str(c.get("reason", ""))
    return None


def job_pods(cli: Cli, name: str) -> list[dict[str, Any]]:
    return list(get_json(cli, "pods", "-l", f"batch.kubernetes.io/job-name={name}").get("items", []))


def unfinished(pods: list[dict[str, Any]]) -> int:
    return sum(p.get("status", {}).get("phase") not in ("Succeeded", "Failed") for p in pods)


def test_completions_3_parallelism_2_completes_with_never_more_than_2_running(
    server: ServerProcess, agent: AgentProcess
) -> None:
    cli = Cli(server.env)
    apply(cli, json.dumps(job("count", "echo counted; sleep 2", completions=3, parallelism=2)))
    waiter: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: waiter.update(
            result=cli.run("wait", "--for=condition=complete", "job/count", "--timeout=120s", timeout=150)
        )
    )
    thread.start()
    peak = 0

    def complete() -> bool:
        nonlocal peak
        peak = max(peak, unfinished(job_pods(cli, "count")))
        return condition(get_json(cli, "job", "count"), "Complete") is not None

    wait_until(complete, 120, "job/count Complete", server.log)
    thread.join(timeout=60)
    assert waiter["result"].returncode == 0 and waiter["result"].stdout == "job.batch/count condition met\n"
    done = get_json(cli, "job", "count")
    assert done["status"]["succeeded"] == 3 and done["status"].get("failed", 0) == 0
    pods = job_pods(cli, "count")
    assert len(pods) == 3 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert peak <= 2
    table = cli.run("get", "jobs").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert table[1].split()[:3] == ["count", "Complete", "3/3"]
    logs = cli.run("logs", "job/count")
    assert logs.returncode == 0 and logs.stdout == "counted\n"


def test_active_deadline_ends_a_long_job_failed(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    apply(cli, json.dumps(job("long", "sleep 300", activeDeadlineSeconds=5)))
    wait_until(
        lambda: condition(get_json(cli, "job", "long"), "Failed") == "DeadlineExceeded",
        60,
        "job/long Failed with DeadlineExceeded",
        server.log,
    )
    wait_until(lambda: unfinished(job_pods(cli, "long")) == 0, 30, "the long pod stopped", agent.log)
    assert cli.run("get", "jobs", "long").stdout.splitlines()[1].split()[1] == "Failed"


@pytest.mark.slow
def test_a_failing_job_with_backoff_limit_2_fails_after_3_pods(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    apply(cli, json.dumps(job("fails", "exit 1", backoffLimit=2)))
    result = cli.run("wait", "--for=condition=failed", "job/fails", "--timeout=150s", timeout=180)
    assert result.returncode == 0, result.stderr + server.log.read_text()[-3000:]
    done = get_json(cli, "job", "fails")
    assert condition(done, "Failed") == "BackoffLimitExceeded" and done["status"]["failed"] == 3
    pods = job_pods(cli, "fails")
    assert len(pods) == 3 and all(p["status"]["phase"] == "Failed" for p in pods)


@pytest.mark.slow
def test_a_cron_job_every_minute_runs_a_job_within_70s(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    cron_job = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": job("x", "echo tick")["spec"]}},
    }
    apply(cli, json.dumps(cron_job))
    wait_until(lambda: get_json(cli, "jobs").get("items"), 70, "a Job of cronjob/tick", server.log)
    name = get_json(cli, "jobs")["items"][0]["metadata"]["name"]
    assert cli.run("wait", "--for=condition=complete", f"job/{name}", "--timeout=60s").returncode == 0
    wait_until(
        lambda: get_json(cli, "cronjob", "tick").get("status", {}).get("lastSuccessfulTime"),
        30,
        "cronjob/tick lastSuccessfulTime",
        server.log,
    )
    row = cli.run("get", "cronjobs").stdout.splitlines()[1].split()
    assert row[0] == "tick" and row[1:6] == ["*/1", "*", "*", "*", "*"] and row[6:9] == ["<none>", "False", "0"]


def test_an_indexed_job_gives_each_pod_its_index_and_host_name(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    spec = {"completions": 2, "parallelism": 2, "completionMode": "Indexed"}
    apply(cli, json.dumps(job("shard", "echo $JOB_COMPLETION_INDEX $(hostname)", **spec)))
    result = cli.run("wait", "--for=condition=complete", "job/shard", "--timeout=90s", timeout=120)
    assert result.returncode == 0, result.stderr + server.log.read_text()[-3000:]
    assert get_json(cli, "job", "shard")["status"]["completedIndexes"] == "0-1"
    seen = set()
    for p in job_pods(cli, "shard"):
        index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert p["metadata"]["name"].startswith(f"shard-{index}-")
        seen.add(cli.run("logs", p["metadata"]["name"]).stdout.strip())
    assert seen == {"0 shard-0", "1 shard-1"}


def test_the_backup_example_snapshots_the_stateful_example(server: ServerProcess, agent: AgentProcess) -> None:
    """examples/backup-cronjob.yaml against the Redis of examples/stateful-app.yaml, one run made now
    with `corral create job --from=cronjob/…` (the web part of the app is left out: it takes a host port)."""
    cli = Cli(server.env)
    app = [
        d for d in yaml.safe_load_all((EXAMPLES / "stateful-app.yaml").read_text()) if d["metadata"]["name"] == "redis"
    ]
    apply(cli, yaml.safe_dump_all(app))
    apply(cli, (EXAMPLES / "backup-cronjob.yaml").read_text())
    wait_until(lambda: condition(get_json(cli, "pod", "redis-0"), "Ready") is not None, 90, "redis-0 Ready", agent.log)
    made = cli.run("create", "job", "redis-backup-now", "--from=cronjob/redis-backup")
    assert made.returncode == 0 and made.stdout == "job.batch/redis-backup-now created\n", made.stderr
    result = cli.run("wait", "--for=condition=complete", "job/redis-backup-now", "--timeout=90s", timeout=120)
    assert result.returncode == 0, result.stderr + cli.run("logs", "job/redis-backup-now").stdout
    assert re.search(r"redis-\d{8}-\d{6}\.rdb\.gz", cli.run("logs", "job/redis-backup-now").stdout)
    owner = get_json(cli, "job", "redis-backup-now")["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("CronJob", "redis-backup")
