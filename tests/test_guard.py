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
