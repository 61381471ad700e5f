"""Progress bars: none for short loops, on for long ones, off inside quiet() (and restored after)."""

from dsas_bench.core.progress import bar, quiet


def test_short_loops_get_no_bar_long_ones_do():
    short = [1, 2, 3]
    assert bar(short, "short") is short
    long = bar(range(10), "long")
    assert list(long) == list(range(10)) and long is not range(10) and hasattr(long, "update")


def test_quiet_turns_bars_off_inside_the_block_only():
    items = range(10)
    with quiet():
        assert bar(items, "quiet") is items
        with quiet(active=False):  # an inner block cannot turn bars back on
            assert bar(items, "still quiet") is items
    assert bar(items, "loud") is not items
