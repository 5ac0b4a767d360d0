"""Scheduled mode's labelling job and windows, checked against hand-computed cases."""

from __future__ import annotations

import pytest

from tools.cost.fleet import hourly_rates
from tools.cost.job import (
    JobAssumptions,
    JobCapacityError,
    backfill_plan,
    hosts_for_deadline,
    largest_host_share,
    most_per_day,
    run_job,
    scheduled_day,
    sizing_hosts,
)
from tools.cost.settings import ScheduledSettings
from tools.cost.startup import AWS, PROJECT, Phase, StartUp

# 300 s billed a host (image, weights, engine) after 100 s of unbilled provisioning; 1 s a photo; $1 an hour.
START = StartUp(
    (
        Phase("provisioning", 100.0, billed=False, controlled_by=AWS, basis="hand"),
        Phase("the rest", 300.0, billed=True, controlled_by=PROJECT, basis="hand"),
    )
)
ON_DEMAND = JobAssumptions(
    seconds_per_photo=1.0, start_up=START, on_demand_hour=1.0, spot_discount=0.6, interruptions_per_host_hour=0.0
)
SETTINGS = ScheduledSettings(use_spot=False)


def test_hosts_follow_the_designs_sizing_rule() -> None:
    # ceil(photos / (5,300 an hour x 60 min)), clamped to 1..max_hosts 4
    assert sizing_hosts(2_500, SETTINGS) == 1
    assert sizing_hosts(10_000, SETTINGS) == 2  # 1.89
    assert sizing_hosts(30_000, SETTINGS) == 4  # 5.7, clamped
    assert sizing_hosts(1, SETTINGS) == 1


@pytest.mark.parametrize(
    ("photos", "hosts", "largest"),
    [
        (2_500, 1, 2_500),  # one host takes everything
        (10_000, 2, 6_000),  # 5 shards of 2,000: hosts get 3 and 2
        (10_400, 2, 5_200),  # 6 shards of 1,733: 3 each
        (9_000, 3, 3_600),  # 5 shards of 1,800: 2, 2 and 1
        (5_000, 2, 5_000 * 2 / 3),  # 3 shards of 1,667: 2 and 1
        (1_000, 4, 250),  # never fewer shards than hosts: 4 of 250
    ],
)
def test_the_busiest_host_gets_whole_equal_shards(photos: int, hosts: int, largest: float) -> None:
    # lambda/window_core.py: max(hosts, ceil(photos / photos_per_shard)) shards of nearly equal size
    assert largest_host_share(photos, hosts, 2_000) == pytest.approx(largest)


def test_a_job_bills_every_host_its_start_up_and_the_busiest_hosts_photos() -> None:
    # 2,500 photos on 1 host: 300 s + 2,500 x 1 s = 2,800 s = 0.7778 host-hours at $1
    job = run_job(2_500, SETTINGS, ON_DEMAND)
    assert (job.hosts, job.wall_seconds) == (1, 2_800)
    assert job.usd == pytest.approx(2_800 / 3600)
    # 10,000 photos: 2 hosts, the busiest 6,000: 2 x (300 + 6,000) s = 3.5 host-hours, 83 % of it labelling
    job = run_job(10_000, SETTINGS, ON_DEMAND)
    assert job.host_hours == pytest.approx(2 * 6_300 / 3600)
    assert job.balance == pytest.approx(10_000 / 12_000)


def test_spot_prices_the_discount_the_fallback_share_and_the_restarts() -> None:
    spot = JobAssumptions(
        seconds_per_photo=1.0,
        start_up=START,
        on_demand_hour=1.0,
        spot_discount=0.6,
        interruptions_per_host_hour=0.1,
    )
    # $1 x (1 - 0.6) = $0.40 on Spot; with a quarter of the windows on-demand: 0.75 x 0.40 + 0.25 x 1 = $0.55
    assert spot.hour_price(use_spot=True) == pytest.approx(0.40)
    assert spot.hour_price(use_spot=False) == 1.0
    fallback = JobAssumptions(**{**spot.__dict__, "on_demand_share": 0.25})
    assert fallback.hour_price(use_spot=True) == pytest.approx(0.55)
    # 2,800 s on 1 host at 0.1 interruptions an hour: 0.0778 expected, each re-paying 300 s + half a 64-photo
    # batch (32 s): (2,800 + 0.0778 x 332) / 3,600 = 0.78495 host-hours x $0.40 = $0.31398
    job = run_job(2_500, ScheduledSettings(), spot)
    assert job.interruptions == pytest.approx(0.1 * 2_800 / 3600)
    assert job.host_hours == pytest.approx((2_800 + 0.1 * 2_800 / 3600 * 332) / 3600)
    assert job.usd == pytest.approx(job.host_hours * 0.40)


def test_six_hour_windows_of_a_flat_day() -> None:
    # 10,000 a day: four regular windows of 2,500 photos, each one host for 2,800 s
    day = scheduled_day(hourly_rates(10_000), SETTINGS, ON_DEMAND)
    assert [w.start_minutes for w in day.windows] == [0, 360, 720, 1080]
    assert all(w.job.photos == pytest.approx(2_500) and not w.early for w in day.windows)
    assert day.host_hours == pytest.approx(4 * 2_800 / 3600)
    assert (day.probes, day.regular) == (96, 4)
    # The worst-placed photo came right after the previous manifest: 360 min + 100 s provisioning + 2,800 s job
    assert day.worst_wait_minutes == pytest.approx(360 + 2_900 / 60)


def test_a_backlog_past_the_threshold_starts_a_window_early() -> None:
    # 100,000 a day = 69.4 a minute: 10,000 pending after 144 minutes, seen by the probe at minute 150
    day = scheduled_day(hourly_rates(100_000), SETTINGS, ON_DEMAND)
    early = [w for w in day.windows if w.early]
    assert early
    assert max(w.job.photos for w in day.windows) == pytest.approx(150 * 100_000 / 1440, rel=1e-6)
    assert sum(w.job.photos for w in day.windows) == pytest.approx(100_000, rel=0.15)


def test_windows_never_overlap() -> None:
    # Hourly windows whose jobs take longer than an hour: the schedule's executions end at once while a job runs,
    # and the next probe catches up once it is done.
    settings = ScheduledSettings(use_spot=False, window_interval_hours=1, backlog_threshold=10**9)
    slow = JobAssumptions(**{**ON_DEMAND.__dict__, "seconds_per_photo": 2.0})
    day = scheduled_day(hourly_rates(48_000), settings, slow)  # 2,000 an hour: 4,000 s + 300 s a job
    for first, second in zip(day.windows, day.windows[1:], strict=False):
        assert second.start_minutes >= first.start_minutes + (100 + first.job.wall_seconds) / 60 - 1e-9


def test_more_uploads_than_the_windows_can_label_is_an_error_naming_the_key() -> None:
    # Back-to-back full windows: 4 hosts x 5,300 x 0.8 x 5.5 h = 93,280 photos a window
    assert ScheduledSettings().window_cap == pytest.approx(93_280)
    with pytest.raises(JobCapacityError, match="raise max_hosts"):
        scheduled_day(hourly_rates(2 * most_per_day(SETTINGS, ON_DEMAND)), SETTINGS, ON_DEMAND)


def test_a_backfill_runs_full_windows_back_to_back() -> None:
    # max_hosts 2, 3,600 photos an hour, 60-min jobs: a window takes 2 x 3,600 x 0.8 x 1 h = 5,760 photos.
    # 12,000 photos = 2 full windows + 480. A full window: 2 hosts, 3 shards of 1,920, the busiest host 3,840
    # photos: 300 + 3,840 = 4,140 s each. The rest: 1 host, 780 s.
    settings = ScheduledSettings(use_spot=False, max_hosts=2, photos_per_hour_per_host=3_600, max_job_minutes=60)
    plan = backfill_plan(12_000, settings, ON_DEMAND)
    assert plan.windows == 3
    assert plan.host_hours == pytest.approx((2 * 2 * 4_140 + 780) / 3600)
    assert plan.usd == pytest.approx(plan.host_hours)
    # Each window: 100 s provisioning + its job + half a 15-minute probe interval before the next
    assert plan.duration_hours == pytest.approx((2 * (100 + 4_140 + 450) + (100 + 780 + 450)) / 3600)


def test_hosts_for_a_deadline_is_the_fewest_that_make_it() -> None:
    plan = hosts_for_deadline(2_000_000, 7, SETTINGS, ON_DEMAND)
    assert plan.duration_hours <= 7 * 24
    fewer = backfill_plan(2_000_000, SETTINGS, ON_DEMAND, max_hosts=plan.max_hosts - 1)
    assert fewer.duration_hours > 7 * 24
    with pytest.raises(ValueError, match="deadline"):
        hosts_for_deadline(2_000_000, 0, SETTINGS, ON_DEMAND)
