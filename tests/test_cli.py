from personalign.pipeline.cli import wall_time


def test_wall_time_reads_as_people_write_durations():
    assert [wall_time(s) for s in (0.4, 42, 319, 3600, 3725)] == [
        "0 s",
        "42 s",
        "5 min 19 s",
        "1 h 00 min",
        "1 h 02 min",
    ]
