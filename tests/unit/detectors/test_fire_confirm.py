"""N-of-M fire confirmation per camera."""

from detectors.fire import FireConfirmer
from detectors.settings import FireSettings


def test_confirms_when_k_of_last_n_reach_threshold():
    confirm = FireConfirmer(FireSettings(threshold=0.5, confirm_k=3, confirm_n=5))
    seen = [confirm.update(s) for s in [0.9, 0.1, 0.6, 0.2, 0.5, 0.1, 0.1, 0.1, 0.9]]
    #       hits so far (window of 5):  1    1    2    2    3    2    2    1    1
    assert seen == [False, False, False, False, True, False, False, False, False]


def test_one_frame_is_enough_when_k_is_one():
    confirm = FireConfirmer(FireSettings(threshold=0.7, confirm_k=1, confirm_n=1))
    assert [confirm.update(s) for s in [0.69, 0.7, 0.2]] == [False, True, False]
