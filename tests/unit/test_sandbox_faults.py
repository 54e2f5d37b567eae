"""The sandbox's fault layer: AWS's own errors, in each service's wire format, repeatable by
seed, logged, never on the sandbox's own calls; botocore's retries ride them out."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.sandbox.emulator import Emulator
from infra.sandbox.faults import (
    DELIVERY_DELAY_SECONDS,
    STATS_PATH,
    FaultPlan,
    Faults,
    FaultSpecError,
)
from infra.sandbox.moto_bridges import STEP_FUNCTIONS_ACCESS_KEY

NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


def client(emulator: Emulator, service: str, config: Config = NO_RETRIES) -> Any:
    return boto3.session.Session(
        aws_access_key_id="tester", aws_secret_access_key="x", region_name="us-east-1"
    ).client(service, endpoint_url=emulator.endpoint, config=config)


@pytest.fixture
def faulty(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    emulator = Emulator(faults=FaultPlan.parse(request.param), fault_log=tmp_path / "f.jsonl")
    emulator.start()
    assert emulator.faults is not None
    emulator.faults.enable()
    try:
        yield emulator
    finally:
        emulator.stop()


def test_the_spec_parses_and_names_what_is_wrong() -> None:
    plan = FaultPlan.parse("dynamodb=0.1, sqs=0.05,latency=50ms,seed=7,capacity=on")
    assert plan == FaultPlan({"dynamodb": 0.1, "sqs": 0.05}, 0.05, True, 7)
    assert FaultPlan.parse("all=0.2").rates["ecs"] == 0.2
    assert FaultPlan.parse("all=0.2").delivery == 0.2  # events come twice or late too
    assert FaultPlan.parse("delivery=0.5").delivery == 0.5
    assert FaultPlan.parse("delivery=0.5").active
    assert not FaultPlan.parse("").active
    for bad, said in [
        ("dynamo=0.1", "'dynamo' is not a service"),
        ("s3=2", "s3=2: a rate between 0 and 1"),
        ("latency=soon", "latency=soon: e.g. 50ms or 0.2s"),
        ("seed=x", "seed=x: a whole number"),
        ("s3", "'s3': write name=value"),
    ]:
        with pytest.raises(FaultSpecError, match=said):
            FaultPlan.parse(bad)


EVERY_CALL_FAILS = "dynamodb=1,s3=1,lambda=1,ecs=1,sqs=1,sts=1,seed=3"


def test_events_come_twice_or_late_at_the_delivery_rate_seeded_and_logged(
    tmp_path: Path,
) -> None:
    def decided(plan: str) -> tuple[list[list[float]], list[str]]:
        log = tmp_path / f"{plan}.jsonl"
        faults = Faults(FaultPlan.parse(plan), lambda *_: [], log)
        assert faults.deliveries("ECS Task State Change") == [0.0]  # not before enable()
        faults.enable()
        made = [faults.deliveries("ECS Task State Change") for _ in range(200)]
        lines = log.read_text().splitlines() if log.exists() else []
        codes = [json.loads(line)["code"] for line in lines]
        return made, codes

    made, codes = decided("delivery=0.3,seed=4")
    twice = [d for d in made if len(d) == 2]
    late = [d for d in made if len(d) == 1 and d[0] > 0]
    assert all(d[0] == 0.0 and 0 < d[1] <= DELIVERY_DELAY_SECONDS for d in twice)
    assert 30 <= len(twice) + len(late) <= 90 and twice and late  # about 30% of 200
    assert codes.count("EventDeliveredTwice") == len(twice)
    assert codes.count("EventDeliveredLate") == len(late)
    assert decided("delivery=0.3,seed=4")[0] == made  # the same seed, the same deliveries
    assert decided("delivery=0,seed=4")[0] == [[0.0]] * 200
    replayed, codes = decided("replay=1,seed=4")  # every event twice, never late
    assert all(len(d) == 2 and d[0] == 0.0 < d[1] <= DELIVERY_DELAY_SECONDS for d in replayed)
    assert codes == ["EventDeliveredTwice"] * 200
    assert FaultPlan.parse("replay=0.5").active


def test_answers_are_lost_at_the_lost_rate_seeded_and_logged(tmp_path: Path) -> None:
    def lost(plan: str) -> list[bool]:
        faults = Faults(FaultPlan.parse(plan), lambda *_: [], tmp_path / "lost.jsonl")
        assert faults.lose_answer("berth-jobs-run") is False  # not before enable()
        faults.enable()
        return [faults.lose_answer("berth-jobs-run") for _ in range(200)]

    made = lost("lost=0.25,seed=2")
    assert 25 <= made.count(True) <= 75 and made == lost("lost=0.25,seed=2")
    assert FaultPlan.parse("all=0.1").lost == 0.1 and not any(lost("s3=0.5"))


@pytest.mark.parametrize("faulty", [EVERY_CALL_FAILS], indirect=True)
def test_each_service_fails_in_its_own_words(faulty: Emulator, tmp_path: Path) -> None:
    calls: dict[str, tuple[Callable[[Any], Any], set[str]]] = {
        "dynamodb": (lambda c: c.list_tables(), {"ThrottlingException", "InternalServerError"}),
        "s3": (lambda c: c.list_buckets(), {"SlowDown", "InternalError"}),
        "lambda": (lambda c: c.list_functions(), {"TooManyRequestsException", "ServiceException"}),
        "ecs": (lambda c: c.list_clusters(), {"ThrottlingException", "ServerException"}),
        "sqs": (lambda c: c.list_queues(), {"ThrottlingException", "InternalFailure"}),
        "sts": (lambda c: c.get_caller_identity(), {"ThrottlingException", "ServiceUnavailable"}),
    }
    seen: dict[str, str] = {}
    for service, (call, codes) in calls.items():
        for _ in range(6):  # both kinds, by the seed
            with pytest.raises(ClientError) as raised:
                call(client(faulty, service))
            code = raised.value.response["Error"]["Code"]
            assert code in codes, (service, code)
            seen[f"{service}:{code}"] = code
    assert len(seen) >= 9  # throttles and server errors both came up
    logged = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert len(logged) == 36 and {line["service"] for line in logged} == set(calls)
    assert faulty.faults is not None and sum(faulty.faults.injected.values()) == 36


@pytest.mark.parametrize("faulty", ["dynamodb=1"], indirect=True)
def test_the_sandboxs_own_calls_are_never_faulted(faulty: Emulator) -> None:
    assert "TableNames" in faulty.client("dynamodb").list_tables()  # key "sandbox"
    with pytest.raises(ClientError):
        client(faulty, "dynamodb").list_tables()


@pytest.mark.parametrize("faulty", ["dynamodb=0.3,seed=11"], indirect=True)
def test_standard_retries_ride_out_a_30_percent_fault_rate(faulty: Emulator) -> None:
    retrying = Config(retries={"mode": "standard", "max_attempts": 10})
    dynamodb = client(faulty, "dynamodb", retrying)
    faulty.client("dynamodb").create_table(
        TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    for n in range(40):
        dynamodb.put_item(TableName="t", Item={"pk": {"S": str(n)}})
    assert faulty.client("dynamodb").scan(TableName="t")["Count"] == 40  # nothing lost
    assert faulty.faults is not None and sum(faulty.faults.injected.values()) >= 5


def test_the_same_seed_gives_the_same_faults(tmp_path: Path) -> None:
    def run(seed: int) -> list[str]:
        log = tmp_path / f"{seed}-{len(list(tmp_path.iterdir()))}.jsonl"
        emulator = Emulator(faults=FaultPlan.parse(f"sqs=0.5,seed={seed}"), fault_log=log).start()
        assert emulator.faults is not None
        emulator.faults.enable()
        try:
            outcomes = []
            sqs = client(emulator, "sqs")
            for _ in range(30):
                try:
                    sqs.list_queues()
                    outcomes.append("ok")
                except ClientError as error:
                    outcomes.append(error.response["Error"]["Code"])
            return outcomes
        finally:
            emulator.stop()

    first = run(5)
    assert first == run(5)
    assert first != run(6)
    assert "ok" in first and len(set(first)) == 3


@pytest.mark.parametrize("faulty", ["capacity=on"], indirect=True)
def test_capacity_off_means_run_task_places_nothing(faulty: Emulator) -> None:
    answer = client(faulty, "ecs").run_task(cluster="c", taskDefinition="td")
    assert answer["tasks"] == [] and answer["failures"][0]["reason"] == "RESOURCE:FARGATE"
    with pytest.raises(ClientError) as raised:
        client(faulty, "ec2").run_instances(ImageId="ami-1", MinCount=1, MaxCount=1)
    assert raised.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert client(faulty, "ecs").list_clusters()["clusterArns"] == []  # only those two


def sfn_client(emulator: Emulator, service: str) -> Any:
    """A client signed like moto's Step Functions interpreter signs its integrations' calls."""
    return boto3.session.Session(
        aws_access_key_id=STEP_FUNCTIONS_ACCESS_KEY,
        aws_secret_access_key="sk",
        region_name="us-east-1",
    ).client(service, endpoint_url=emulator.endpoint, config=NO_RETRIES)


@pytest.mark.parametrize("faulty", ["ecs=1,lambda=1"], indirect=True)
def test_a_state_machines_task_can_fail_but_not_step_functions_own_polling(
    faulty: Emulator,
) -> None:
    """Found by the chaos run: moto's interpreter failed a .sync ECS task on one throttled
    DescribeTasks poll (and the job, already done, left two ZIPs). On AWS that polling is Step
    Functions' own business; only the task's action (RunTask, Invoke) fails the task."""
    ecs = sfn_client(faulty, "ecs")
    with pytest.raises(ClientError):
        ecs.run_task(cluster="c", taskDefinition="td")
    with pytest.raises(ClientError):
        sfn_client(faulty, "lambda").invoke(FunctionName="f", Payload=b"{}")
    with pytest.raises(ClientError) as raised:
        ecs.describe_tasks(cluster="c", tasks=["t"])
    assert raised.value.response["Error"]["Code"] == "ClusterNotFoundException"  # moto's own


@pytest.mark.parametrize("faulty", ["sqs=0.5,seed=4"], indirect=True)
def test_the_emulator_tells_what_was_asked_retried_and_injected(faulty: Emulator) -> None:
    retrying = Config(retries={"mode": "standard", "max_attempts": 10})
    for _ in range(10):
        client(faulty, "sqs", retrying).list_queues()
    with urllib.request.urlopen(f"{faulty.endpoint}{STATS_PATH}", timeout=10) as answer:  # noqa: S310
        stats = json.loads(answer.read())
    injected = sum(stats["injected"].values())
    assert injected >= 3
    assert stats["retries"] == injected  # every fault was retried, and nothing else
    assert stats["requests"] == 10 + injected
