"""The rate governor (token bucket, capacity share, backing off on throttling) and the place of a
restore target (options per source type, residency), on cloudkeep's own protocols: an explicit
clock, a recorded sleep, writers of our own."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import yaml

from cloudkeep.capabilities import ReportsWriteCapacity
from cloudkeep.errors import SourceError, ThrottledError, UsageError
from cloudkeep.governor import Governor, TokenBucket
from cloudkeep.manifest import Manifest, Totals
from cloudkeep.place import Place
from cloudkeep.policy import parse_policy
from cloudkeep.progress import eta_text
from cloudkeep.target import placed_spec


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self, advance: bool = True) -> None:
        self.advance = advance
        self.now = 100.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            if self.advance:
                self.now += seconds


class Writer:
    target = "t"

    def __init__(self, throttles: int = 0, error: type[Exception] = ThrottledError) -> None:
        self.throttles = throttles
        self.error = error
        self.lines: list[bytes] = []
        self.calls = 0

    def write(self, lines: list[bytes]) -> int:
        self.calls += 1
        if self.throttles:
            self.throttles -= 1
            raise self.error("DynamoDB ProvisionedThroughputExceededException while writing to t")
        self.lines += lines
        return len(lines)


class Provisioned(Writer, ReportsWriteCapacity):
    def __init__(self, units: float | None) -> None:
        super().__init__()
        self.units = units

    def write_capacity(self) -> float | None:
        return self.units


def manifest(items: int, raw_bytes: int, method: str = "scan") -> Manifest:
    return Manifest.model_construct(
        dataset="orders", snapshot_id="20261207T000000Z", method=method,
        source={"type": "dynamodb", "table": "orders", "region": "us-east-1"},
        totals=Totals(items=items, parts=0, raw_bytes=raw_bytes, stored_bytes=0))


def lines(n: int) -> list[bytes]:
    return [b'{"Item": {"pk": {"S": "%d"}}}' % i for i in range(n)]


# ------------------------------------------------------------------------------- token bucket


def test_bucket_never_lets_n_items_through_faster_than_n_over_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(200, clock=clock, sleep=clock.sleep)
    for _ in range(80):
        bucket.take(25)
    assert clock.now - 100.0 == pytest.approx(2000 / 200)


def test_bucket_saves_no_burst_while_idle_and_does_not_punish_slow_writers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep)
    bucket.take(10)
    assert clock.now == pytest.approx(101.0)
    clock.now += 60  # the writer was slow: no debt, and no saved-up burst either
    assert bucket.take(10) == pytest.approx(1.0)


def test_bucket_is_shared_by_threads() -> None:
    clock = FakeClock(advance=False)  # every thread takes at the same moment
    bucket = TokenBucket(100, clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=lambda: [bucket.take(10) for _ in range(10)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 400 tokens at 100/s: the last taker's tokens are due 4 s after the first take
    assert max(clock.slept) == pytest.approx(4.0)
    assert sorted(clock.slept) == pytest.approx([0.1 * k for k in range(1, 41)])


def test_max_rate_splits_writes_and_waits_for_tokens() -> None:
    clock = FakeClock()
    inner = Writer()
    governor = Governor(max_rate=200, sleep=clock.sleep, clock=clock)
    writer = governor.govern(inner, manifest(2000, 200_000))
    for _ in range(4):
        assert writer.write(lines(500)) == 500
    assert len(inner.lines) == 2000
    assert clock.now - 100.0 >= 10.0
    assert governor.as_dict()["max_rate"] == 200


def test_unset_governor_passes_writes_through_untouched() -> None:
    inner = Writer()
    governor = Governor()
    writer = governor.govern(inner, manifest(10, 100))
    assert writer.write(lines(500)) == 500
    assert inner.calls == 1  # one call, not split
    assert governor.as_dict() == {"max_rate": None, "basis": None, "throttled": 0,
                                  "throttle_seconds": 0.0}


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_max_rate_is_usage(bad: float) -> None:
    with pytest.raises(UsageError, match="--max-rate"):
        Governor(max_rate=bad)


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.5])
def test_bad_capacity_share_is_usage(bad: float) -> None:
    with pytest.raises(UsageError, match="--capacity-share"):
        Governor(capacity_share=bad)


# ------------------------------------------------------------------------------ capacity share


def test_capacity_share_of_a_provisioned_target() -> None:
    governor = Governor(capacity_share=0.5)
    governor.govern(Provisioned(40), manifest(1000, 500_000))  # 500 B per item: 1 unit each
    assert governor.rate == pytest.approx(20)
    assert "0.5 of 40 write units/s" in governor.basis
    big = Governor(capacity_share=0.5)
    big.govern(Provisioned(40), manifest(1000, 1000 * 2500))  # 2.5 KB per item: 3 units each
    assert big.rate == pytest.approx(20 / 3)


def test_capacity_share_and_max_rate_take_the_lower() -> None:
    governor = Governor(max_rate=5, capacity_share=0.5)
    governor.govern(Provisioned(40), manifest(10, 100))
    assert governor.rate == 5 and "--max-rate" in governor.basis


def test_capacity_share_on_demand_is_reported_not_applied() -> None:
    governor = Governor(capacity_share=0.5)
    writer = governor.govern(Provisioned(None), manifest(10, 100))
    assert governor.rate is None and "not applied" in governor.basis
    assert writer.write(lines(3)) == 3


# ------------------------------------------------------------------------------- throttling


def test_throttled_writes_back_off_and_succeed() -> None:
    clock = FakeClock()
    inner = Writer(throttles=5)
    governor = Governor(sleep=clock.sleep, clock=clock)
    writer = governor.govern(inner, manifest(10, 100))
    assert writer.write(lines(10)) == 10
    assert len(inner.lines) == 10 and inner.calls == 6
    assert governor.throttled == 5 and len(clock.slept) == 5
    assert governor.throttle_seconds == pytest.approx(sum(clock.slept))
    # capped exponential backoff: each pause at most the cap, growing from the base
    assert clock.slept[0] <= 0.2 and clock.slept[-1] > clock.slept[0]


def test_throttled_without_progress_past_the_budget_fails() -> None:
    clock = FakeClock()
    inner = Writer(throttles=10_000)
    governor = Governor(sleep=clock.sleep, clock=clock, throttle_budget=60)
    writer = governor.govern(inner, manifest(10, 100))
    with pytest.raises(ThrottledError, match="still throttled after backing off for 60s"):
        writer.write(lines(1))
    assert sum(clock.slept) <= 60


def test_other_errors_are_not_retried() -> None:
    inner = Writer(throttles=1, error=SourceError)
    writer = Governor().govern(inner, manifest(10, 100))
    with pytest.raises(SourceError):
        writer.write(lines(1))
    assert inner.calls == 1


def test_eta_text() -> None:
    assert eta_text(50, 100, 10.0) == ", ETA 5s"
    assert eta_text(0, 1000, 10.0) == ", ETA 1m40s"
    assert eta_text(0, 100_000, 10.0) == ", ETA 2h46m"
    assert eta_text(100, 100, 10.0) == "" and eta_text(1, None, 1.0) == "" and eta_text(1, 5, 0) == ""


# ------------------------------------------------------------------------------------ place


def policy(source: dict[str, Any], residency: list[str] | None = None) -> Any:
    data: dict[str, Any] = {
        "version": 1,
        "stores": {"vault": {"type": "file", "path": "/tmp/vault"}},
        "tiers": {"t": {"schedule": "0 2 * * *", "rpo": "26h", "retention": {"daily": 7}}},
        "datasets": {"orders": {"source": source, "tier": "t", "store": "vault"}},
    }
    if residency:
        data["residency"] = {"allowed_regions": residency}
        data["stores"]["vault"] = {"type": "s3", "bucket": "vault-bucket", "region": residency[0]}
    return parse_policy(yaml.safe_dump(data))


DDB = {"type": "dynamodb", "table": "orders", "region": "us-east-1"}


@pytest.mark.parametrize(("place", "message"), [
    (dict(role_arn="arn:aws:iam::12345:role/x"), "bad --role-arn"),
    (dict(external_id="abc"), "--external-id needs --role-arn"),
    (dict(region="Mars-1"), "bad --region"),
    (dict(region=" us-east-1"), "surrounding spaces"),
    (dict(key_env="my key"), "bad --key-env"),
    (dict(endpoint="https://user:pw@acct.documents.azure.com"), "bad --endpoint"),
    (dict(project="Bad_Project"), "bad --project"),
])
def test_malformed_place_is_usage(place: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Place(**place)


def test_place_describes_itself_without_the_external_id() -> None:
    place = Place(region="eu-west-1", role_arn="arn:aws:iam::111111111111:role/restorer",
                  external_id="s3cr3t-ish")
    shown = place.describe()
    assert shown == {"region": "eu-west-1", "role_arn": "arn:aws:iam::111111111111:role/restorer",
                     "external_id": True, "account": "111111111111"}
    assert "s3cr3t-ish" not in repr(shown)


def test_an_option_the_source_does_not_take_is_refused() -> None:
    loaded = policy(DDB)
    with pytest.raises(UsageError, match=r"--project does not apply to a restore of a dynamodb "
                                         r"source \(it takes: --external-id, --profile, --region, --role-arn\)"):
        placed_spec(loaded, manifest(1, 1), Place(project="other-project"))
    placed = placed_spec(loaded, manifest(1, 1), Place(region="eu-west-1"))
    assert placed.region_name() == "eu-west-1"
    assert loaded.dataset("orders").source.region_name() == "us-east-1"  # the policy is untouched


def test_residency_refuses_a_target_region_outside_it() -> None:
    loaded = policy(DDB, residency=["us-east-1", "us-west-2"])
    with pytest.raises(UsageError) as caught:
        placed_spec(loaded, manifest(1, 1), Place(region="eu-west-1"))
    text = str(caught.value)
    assert text == ("refusing to restore into region 'eu-west-1': outside residency.allowed_regions "
                    "(us-east-1, us-west-2); nothing was written")
    assert placed_spec(loaded, manifest(1, 1), Place(region="us-west-2")).region_name() == "us-west-2"
    # another account, the source's region: allowed
    placed_spec(loaded, manifest(1, 1), Place(role_arn="arn:aws:iam::111111111111:role/r"))


def test_residency_needs_the_region_of_another_cosmos_account() -> None:
    cosmos = {"type": "cosmos", "endpoint": "https://a.documents.azure.com", "database": "d",
              "container": "c", "region": "westeurope"}
    loaded = policy(cosmos, residency=["westeurope"])
    with pytest.raises(UsageError, match="region is unknown.*name it with --region"):
        placed_spec(loaded, manifest(1, 1), Place(endpoint="https://b.documents.azure.com"))
    placed = placed_spec(loaded, manifest(1, 1),
                         Place(endpoint="https://b.documents.azure.com", region="westeurope"))
    assert placed.model_dump()["endpoint"] == "https://b.documents.azure.com"


def test_key_env_must_name_a_set_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    cosmos = {"type": "cosmos", "endpoint": "https://a.documents.azure.com", "database": "d",
              "container": "c"}
    monkeypatch.delenv("OTHER_COSMOS_KEY", raising=False)
    with pytest.raises(UsageError, match="--key-env OTHER_COSMOS_KEY: that environment variable is not set"):
        placed_spec(policy(cosmos), manifest(1, 1), Place(key_env="OTHER_COSMOS_KEY"))
    monkeypatch.setenv("OTHER_COSMOS_KEY", "k3y-value-long-enough")
    placed = placed_spec(policy(cosmos), manifest(1, 1), Place(key_env="OTHER_COSMOS_KEY"))
    assert placed.secret_envs() == ["OTHER_COSMOS_KEY"]


def test_a_native_backup_cannot_move() -> None:
    loaded = policy(DDB | {"method": "native"})
    with pytest.raises(UsageError, match="native native backup.*--region cannot move it"):
        placed_spec(loaded, manifest(1, 1, method="native"), Place(region="eu-west-1"))
    placed_spec(loaded, manifest(1, 1, method="native"), Place())  # here: fine


def test_region_alone_cannot_relabel_the_source_account_of_cosmos_or_firestore() -> None:
    cosmos = {"type": "cosmos", "endpoint": "https://a.documents.azure.com", "database": "d",
              "container": "c", "region": "westeurope"}
    with pytest.raises(UsageError, match="give it with --endpoint"):
        placed_spec(policy(cosmos, residency=["westeurope", "eastus"]), manifest(1, 1),
                    Place(region="eastus"))
    firestore = {"type": "firestore", "project": "acme-prod", "region": "eur3"}
    with pytest.raises(UsageError, match="give it with --project"):
        placed_spec(policy(firestore, residency=["eur3", "nam5"]), manifest(1, 1), Place(region="nam5"))
    placed = placed_spec(policy(firestore, residency=["eur3", "nam5"]), manifest(1, 1),
                         Place(project="acme-dr", region="nam5"))
    assert placed.model_dump()["project"] == "acme-dr" and placed.region_name() == "nam5"


def test_an_sdk_throttling_error_let_through_is_backed_off_too() -> None:
    from botocore.exceptions import ClientError

    def throttle() -> ClientError:
        return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                      "Message": "slow down"}}, "BatchWriteItem")

    class RawWriter(Writer):
        def write(self, lines: list[bytes]) -> int:
            self.calls += 1
            if self.calls <= 3:
                raise throttle()
            self.lines += lines
            return len(lines)

    clock = FakeClock()
    inner = RawWriter()
    governor = Governor(sleep=clock.sleep, clock=clock)
    assert governor.govern(inner, manifest(5, 50)).write(lines(5)) == 5
    assert governor.throttled == 3 and len(inner.lines) == 5
    other = ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, "BatchWriteItem")

    class Refusing(Writer):
        def write(self, lines: list[bytes]) -> int:
            raise other

    with pytest.raises(ClientError):
        Governor().govern(Refusing(), manifest(5, 50)).write(lines(1))


def test_log_progress_lines_show_items_per_second_and_an_eta(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from cloudkeep.progress import LogProgress

    progress = LogProgress(interval=0)
    with caplog.at_level(logging.INFO, logger="cloudkeep.progress"):
        progress.start("restore orders → t", 100)
        progress.advance(40, 4000)
        progress.finish()
    first, last = caplog.messages[0], caplog.messages[-1]
    assert "restore orders → t: 40 items" in first and "items/s" in first and ", ETA " in first
    assert "items/s" in last
