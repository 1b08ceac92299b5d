import itertools

import pytest

from vidcompress.errors import ConfigError
from vidcompress.prune import (
    AGPSchedule,
    ConstantSchedule,
    PruneConfig,
    Schedule,
    StepSchedule,
    parse_schedule,
)


def test_step_schedule_matches_the_paper() -> None:
    schedule = StepSchedule()
    assert [schedule.sparsity_at(0.8, s) for s in range(10)] == [
        0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.8
    ]  # fmt: skip
    assert schedule.steps_to_reach(0.8) == 8
    assert schedule.steps_to_reach(0.85) == 9
    assert schedule.sparsity_at(0.85, 9) == 0.85
    assert schedule.steps_to_reach(0.95) == 10


def test_agp_and_constant_schedules() -> None:
    agp = AGPSchedule(steps=10)
    values = [agp.sparsity_at(0.9, s) for s in range(12)]
    assert values[0] == 0.0 and values[10] == values[11] == 0.9
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert values[1] - values[0] > values[10] - values[9]  # fast first, slow at the end
    assert values[5] == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert ConstantSchedule().sparsity_at(0.9, 1) == 0.9


@pytest.mark.parametrize("schedule", [ConstantSchedule(), StepSchedule(0.05), AGPSchedule(7, 2)])
def test_configs_round_trip_through_json(schedule: Schedule) -> None:
    assert Schedule.from_dict(schedule.to_dict()) == schedule
    config = PruneConfig(sparsity="conv=0.9,fc=0.95,layer4.*=0.8", schedule=schedule)
    assert PruneConfig.from_json(config.to_json()) == config


def test_parse_schedule_errors() -> None:
    assert parse_schedule("step:0.2") == StepSchedule(0.2)
    assert parse_schedule("agp:5") == AGPSchedule(5)
    with pytest.raises(ConfigError, match="schedule 'cubic'"):
        parse_schedule("cubic")
    with pytest.raises(ConfigError, match="increment"):
        StepSchedule(0.0)
