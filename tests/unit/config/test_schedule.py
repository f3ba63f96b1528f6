"""A schedule the worker could not apply, or that could never run, is an error where it is written."""

from __future__ import annotations

from pipeline.config import load_config

from .conftest import issues_of, only


def camera_with(schedule: str) -> str:
    return f"""
        groups:
          - id: g
            cameras:
              - id: c1
                url: rtsp://10.0.0.1/s
                grid: G1
                schedule: {schedule}
        """


def test_an_unknown_time_zone_is_rejected_with_a_did_you_mean(write):
    path = write("city.yaml", camera_with('{start: "06:00", end: "22:00", timezone: Asia/Shangai}'))
    issue = only(issues_of(path), "groups[0].cameras[0].schedule.timezone")
    assert (issue.file, issue.line) == ("city.yaml", 7)
    assert issue.message == "unknown time zone 'Asia/Shangai'; did you mean 'Asia/Shanghai'?"


def test_time_zones_that_are_not_names_are_rejected_without_a_traceback(write):
    for bad in ("Mars/Olympus", "../../etc/passwd", "''"):
        path = write("city.yaml", camera_with(f'{{start: "06:00", end: "22:00", timezone: {bad}}}'))
        assert "unknown time zone" in only(issues_of(path), "groups[0].cameras[0].schedule.timezone").message


def test_known_time_zones_load(write):
    for good in ("UTC", "Asia/Shanghai", "Europe/Berlin"):
        path = write("city.yaml", camera_with(f'{{start: "06:00", end: "22:00", timezone: {good}}}'))
        assert load_config([path]).camera("c1").schedule.timezone == good


def test_a_schedule_that_never_runs_is_rejected(write):
    path = write("city.yaml", camera_with('{start: "06:00", end: "06:00"}'))
    end = only(issues_of(path), "groups[0].cameras[0].schedule.end")
    assert end.line == 7 and "end equals start (06:00): the window would be empty" in end.message
    path = write("city.yaml", camera_with('{start: "06:00", end: "22:00", days: []}'))
    days = only(issues_of(path), "groups[0].cameras[0].schedule.days")
    assert days.line == 7 and "no days: the camera would never be analysed" in days.message


def test_overnight_windows_still_load(write):
    path = write("city.yaml", camera_with('{start: "22:00", end: "06:00", days: [fri]}'))
    schedule = load_config([path]).camera("c1").schedule
    assert (schedule.start, schedule.end, schedule.days) == ("22:00", "06:00", ["fri"])
