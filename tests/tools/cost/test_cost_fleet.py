"""Endpoint fleets hour by hour, checked against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from tools.cost.fleet import (
    Assumptions,
    CapacityError,
    Performance,
    async_day,
    async_on_fraction,
    async_utilisation,
    hourly_rates,
    real_time_day,
    response_seconds,
    upload_ceiling,
    utilisation_at_target,
)
from tools.cost.settings import Settings

# One instance labels a photo a second when saturated; a request alone takes 2 s.
PERF = Performance(seconds_per_photo=1.0, unloaded_latency=2.0)
ASSUME = Assumptions(cold_start_minutes=10, async_idle_minutes=15)


def test_target_tracking_holds_utilisation_at_t_over_t_plus_one() -> None:
    # Processor sharing: mean number in system rho / (1 - rho) = 6  =>  rho = 6 / 7
    assert utilisation_at_target(6) == pytest.approx(6 / 7)


def test_the_daily_curve_spreads_the_volume_by_weight() -> None:
    # 86,400 photos, flat: 3,600 an hour = 1 a second in every hour
    assert hourly_rates(86_400) == pytest.approx([1.0] * 24)
    # Weights 1 for 12 hours and 3 for 12 hours: 86,400 x 3 / 48 = 5,400 photos an hour = 1.5/s
    rates = hourly_rates(86_400, [1.0] * 12 + [3.0] * 12)
    assert rates[0] == pytest.approx(0.5)
    assert rates[12] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="24 non-negative"):
        hourly_rates(1000, [1.0] * 23)


def test_response_time_is_processor_sharing_never_below_the_unloaded_latency() -> None:
    # 1.8/s on 2 instances: rho = 0.9, S / (1 - rho) = 1 / 0.1 = 10 s
    assert response_seconds(1.8, 2, PERF) == pytest.approx(10.0)
    # 0.2/s on 2 instances: rho = 0.1, 1 / 0.9 = 1.11 s < the 2-s unloaded latency
    assert response_seconds(0.2, 2, PERF) == pytest.approx(2.0)


def test_the_upload_path_alone_drives_at_most_its_concurrency_over_the_target() -> None:
    # ceil(12 / 6) = 2 of the 4 instances; ceil(24 / 6) = 4
    assert upload_ceiling(Settings(upload_max_concurrency=12)) == 2
    assert upload_ceiling(Settings(upload_max_concurrency=24)) == 4
    assert upload_ceiling(Settings(upload_max_concurrency=100)) == 4  # max_capacity


def test_flat_traffic_keeps_the_instances_the_target_needs_all_day() -> None:
    # 1 photo/s, 1 s a photo, target 6 => rho 6/7: ceil(1 / (6/7)) = ceil(1.167) = 2 instances, 24 h = 48
    day = real_time_day(hourly_rates(86_400), PERF, Settings(), ASSUME)
    assert sum(h.instances for h in day) == pytest.approx(48.0)
    # rho on 2 instances = 0.5: S / 0.5 = 2 s = the unloaded latency; far under 12 in flight / 1 per s = 12 s
    assert all(h.waiting_seconds == pytest.approx(2.0) for h in day)


def test_an_idle_night_scales_in_after_the_alarm_and_the_cooldowns() -> None:
    # 12 idle hours, then 12 hours at 3 photos/s: ceil(3 / (6/7)) = ceil(3.5) = 4 instances (upload ceiling
    # ceil(24 / 6) = 4). Steady state (the day starts from the previous evening's 4 instances):
    #   hour 0: 1 instance + scale-in 4 -> 1, one instance leaving after 15 min, then a 600-s cooldown each:
    #           0.25 + (0.25 + 0.1667) + (0.25 + 0.3333) = 1.25 h            -> 2.25
    #   hours 1-11: 1 each                                                  -> 11
    #   hour 12: 4 instances + 3 new ones billed 10 min while they load: 0.5 -> 4.5
    #   hours 13-23: 4 each                                                 -> 44
    # Total 2.25 + 11 + 4.5 + 44 = 61.75 instance-hours a day.
    curve = [0.0] * 12 + [1.0] * 12
    settings = Settings(upload_max_concurrency=24, scale_in_cooldown_seconds=600)
    day = real_time_day(hourly_rates(3 * 3600 * 12, curve), PERF, settings, ASSUME)
    assert day[0].instances == pytest.approx(2.25)
    assert day[12].instances == pytest.approx(4.5)
    assert sum(h.instances for h in day) == pytest.approx(61.75)


def test_a_fleet_that_cannot_keep_up_is_an_error_naming_what_to_raise() -> None:
    # 3 photos/s against a ceiling of 2 instances x 1 photo/s
    with pytest.raises(CapacityError, match=r"upload\.max_concurrency"):
        real_time_day(hourly_rates(3 * 86_400), PERF, Settings(upload_max_concurrency=12), ASSUME)


def test_async_on_share_follows_the_renewal_formula() -> None:
    # rate 1/600 per s, idle G = 600 s, cold start C = 300 s: rate x G = 1, e = 2.71828
    # on = (C + (e - 1) / rate) / (C + e / rate) = (300 + 1.71828 x 600) / (300 + 2.71828 x 600)
    #    = (300 + 1030.97) / (300 + 1630.97) = 1330.97 / 1930.97 = 0.68927
    assumptions = Assumptions(cold_start_minutes=5, async_idle_minutes=10)
    assert async_on_fraction(1 / 600, assumptions) == pytest.approx(0.68927, abs=1e-5)
    assert async_on_fraction(0.0, assumptions) == 0.0
    assert async_on_fraction(1.0, assumptions) == 1.0  # never idle for 10 min
    # Rare photos: each costs about C + G of instance time: rate 1e-5/s x (300 + 600) s = 0.009
    assert async_on_fraction(1e-5, assumptions) == pytest.approx(1e-5 * 900, rel=0.01)


def test_async_scales_to_zero_when_no_photo_arrives() -> None:
    # Uploads only from 12:00 to 24:00 at 3/s: the backlog target keeps ceil(3 / 1) = 3 saturated instances for
    # 12 h (real-time keeps 4 at rho 6/7); at midnight the three leave one by one: the first after 15 idle
    # minutes, the others a 600-s cooldown apart: 0.25 + (0.25 + 0.1667) + (0.25 + 0.3333) = 1.25 h; then nothing.
    curve = [0.0] * 12 + [1.0] * 12
    settings = Settings(upload_max_concurrency=24)
    asynchronous = async_day(hourly_rates(3 * 3600 * 12, curve), PERF, settings, ASSUME)
    real_time = real_time_day(hourly_rates(3 * 3600 * 12, curve), PERF, settings, ASSUME)
    assert asynchronous[0].instances == pytest.approx(1.25)
    assert sum(h.instances for h in asynchronous[1:12]) == 0.0
    # Hour 12 starts from zero: 3 instances + 3 x 10 min start-up = 3.5
    assert asynchronous[12].instances == pytest.approx(3 + 3 * 10 / 60)
    # 1.25 + 3.5 + 11 x 3 = 37.75 instance-hours against real-time's 61.75
    assert sum(h.instances for h in asynchronous) == pytest.approx(1.25 + 3.5 + 33)
    assert sum(h.instances for h in real_time) == pytest.approx(61.75)


def test_the_async_fleet_is_sized_by_its_backlog_target_not_the_real_time_rule() -> None:
    # 1 photo/s flat on instances of 1 photo/s. Real-time target tracking (6 in flight, rho 6/7) keeps
    # ceil(1 / (6/7)) = 2 instances. Async tracks ApproximateBacklogSizePerInstance (target 200): one instance
    # that keeps up holds a few requests, far under 200, so the fleet shrinks to the one saturated instance.
    rates = hourly_rates(86_400)
    assert async_utilisation() == 1.0
    assert sum(h.instances for h in async_day(rates, PERF, Settings(), ASSUME)) == pytest.approx(24.0)
    assert sum(h.instances for h in real_time_day(rates, PERF, Settings(), ASSUME)) == pytest.approx(48.0)
    # 3.5 photos/s: ceil(3.5) = 4 async instances against ceil(3.5 / (6/7)) = 5 real-time
    busy = hourly_rates(3.5 * 86_400)
    wide = Settings(max_capacity=8, upload_max_concurrency=48)
    assert sum(h.instances for h in async_day(busy, PERF, wide, ASSUME)) == pytest.approx(4 * 24)
    assert sum(h.instances for h in real_time_day(busy, PERF, wide, ASSUME)) == pytest.approx(5 * 24)


def test_the_worst_wait_for_a_label_in_each_endpoint_mode() -> None:
    # Real-time, 1 photo/s on 2 instances (rho 0.5): a request takes max(2 s alone, 1 / 0.5) = 2 s, and the 4
    # records of a batch are labelled one after another: 8 s.
    day = real_time_day(hourly_rates(86_400), PERF, Settings(), ASSUME)
    assert max(h.worst_seconds for h in day) == pytest.approx(4 * 2.0)
    # Async, always busy: the standing queue of the backlog target (200 requests x 1 s) + the request itself (2 s)
    busy = async_day(hourly_rates(86_400), PERF, Settings(), ASSUME)
    assert max(h.worst_seconds for h in busy) == pytest.approx(200 + 2)
    # Async at 10 photos a day reaches zero: + the HasBacklogWithoutCapacity alarm (2 min) + the cold start (10)
    rare = async_day(hourly_rates(10), PERF, Settings(), ASSUME)
    assert max(h.worst_seconds for h in rare) == pytest.approx(200 + 2 + 12 * 60)


def test_async_at_steady_traffic_never_idles_long_enough_to_stop() -> None:
    # 1,000 photos a day: rate 0.01157/s, rate x 900 s = 10.4; e^-10.4 = 3e-5 of the time off
    day = async_day(hourly_rates(1000), PERF, Settings(), ASSUME)
    assert sum(h.instances for h in day) == pytest.approx(24.0, rel=1e-3)
    assert math.isclose(day[5].waiting_seconds, 0.0)
