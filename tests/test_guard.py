"""The spike guard: a loss far above the running median of good steps is refused, and only then."""
import pytest

from stylenet.guard import SpikeGuard


def test_no_spike_before_enough_history():
    guard = SpikeGuard(factor=4, min_history=5)
    assert not any(guard.is_spike(loss) for loss in (1.0, 100.0, 1.0, 1.0, 1.0))


def test_a_jump_above_the_median_is_a_spike_and_stays_out_of_the_history():
    guard = SpikeGuard(factor=4, window=10, min_history=5)
    for _ in range(10):
        assert not guard.is_spike(1.0)
    assert guard.is_spike(4.5)
    assert not guard.is_spike(3.9)
    assert 4.5 not in guard.history and 3.9 in guard.history


def test_a_warm_up_ramp_is_not_a_spike():
    guard = SpikeGuard(factor=4, min_history=20)
    # the style weight ramps in over 150 steps: the loss grows by up to ~8x, a little each step
    assert not any(guard.is_spike(1.0 + 7.0 * min(1.0, step / 150)) for step in range(300))


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_a_factor_of_one_or_less_is_refused(factor):
    with pytest.raises(ValueError, match="above 1"):
        SpikeGuard(factor=factor)


def test_a_level_that_really_moved_is_accepted_after_max_skips_in_a_row():
    guard = SpikeGuard(factor=4, min_history=5, max_skips=3)
    for _ in range(5):
        guard.is_spike(1.0)
    assert [guard.is_spike(10.0) for _ in range(5)] == [True, True, True, False, False]
    assert list(guard.history) == [10.0, 10.0]  # started again from the new level


def test_state_round_trip_judges_the_next_step_the_same():
    guard = SpikeGuard(factor=4, min_history=5)
    for loss in (1.0, 1.2, 0.9, 1.1, 1.0, 9.0):
        guard.is_spike(loss)
    again = SpikeGuard(factor=4, min_history=5)
    again.load(guard.state())
    assert again.state() == guard.state() == {"history": [1.0, 1.2, 0.9, 1.1, 1.0], "skips": 1}
    assert again.is_spike(5.0) and guard.is_spike(5.0)
