"""ingest.urls: a URL with a mistyped scheme is refused, and redaction finds passwords without '://' and
under the names vendors give them."""

from __future__ import annotations

import pytest

from ingest.source import CameraSource
from ingest.urls import redact_text, redact_url, url_scheme

SECRET = "hunter2"


@pytest.mark.parametrize(("url", "meant"), [
    (f"rtsp:/admin:{SECRET}@10.0.0.2/s", "rtsp://***@10.0.0.2/s"),
    (f"rtsp//admin:{SECRET}@10.0.0.2/s", "rtsp://***@10.0.0.2/s"),
    (f"RTSP:admin:{SECRET}@10.0.0.2/s", "rtsp://***@10.0.0.2/s"),
    ("http:/10.0.0.2/live.m3u8", "http://10.0.0.2/live.m3u8"),
])
def test_a_url_with_a_mistyped_scheme_is_refused_without_its_password(url, meant):
    with pytest.raises(ValueError, match="looks like a mistyped scheme") as err:
        url_scheme(url)
    assert f"did you mean {meant!r}" in str(err.value) and SECRET not in str(err.value)
    with pytest.raises(ValueError, match="mistyped scheme"):
        CameraSource("c", url)


@pytest.mark.parametrize("url", [f"admin:{SECRET}@10.0.0.2/s", f"/videos/admin:{SECRET}@10.0.0.2/s",
                                 f"cams/admin:p/{SECRET}@10.0.0.2/s"])
def test_a_path_holding_user_password_at_is_refused_without_the_password(url):
    with pytest.raises(ValueError, match=r"holds credentials \(user:password@\) but no scheme") as err:
        url_scheme(url)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("path", ["a.mp4", "/data/vtest.avi", "rtsp/cam1.mp4", "clips/12:00.mp4", "me@host.mp4"])
def test_ordinary_file_paths_are_still_files(path):
    assert url_scheme(path) == "file"


@pytest.mark.parametrize(("url", "shown"), [
    (f"rtsp:/admin:{SECRET}@10.0.0.2/s", "rtsp:/***@10.0.0.2/s"),
    (f"rtsp//admin:{SECRET}@10.0.0.2/s", "rtsp//***@10.0.0.2/s"),
    (f"admin:{SECRET}@10.0.0.2/s", "***@10.0.0.2/s"),
    (f"/cfg/rtsp:/admin:p@s/{SECRET}@10.0.0.2/s", "/cfg/rtsp:/***@10.0.0.2/s"),
])
def test_userinfo_without_a_scheme_is_redacted(url, shown):
    assert redact_url(url) == shown
    error = f"[Errno 2] No such file or directory: '{url}'"
    assert redact_text(error) == f"[Errno 2] No such file or directory: '{redact_url(url)}'"


@pytest.mark.parametrize(("url", "shown"), [
    (f"http://h/s?loginpass={SECRET}&userpwd={SECRET}", "http://h/s?loginpass=***&userpwd=***"),
    (f"http://h/cgi?usr=admin;psw={SECRET}", "http://h/cgi?usr=admin;psw=***"),
    (f"http://h/cgi?usr=admin&psw={SECRET}&ch=1", "http://h/cgi?usr=admin&psw=***&ch=1"),
    (f"http://h/a?loginpas={SECRET}&user_password={SECRET}", "http://h/a?loginpas=***&user_password=***"),
    (f"rtsp://h:554/user=admin_password={SECRET}_channel=1_stream=0.sdp",
     "rtsp://h:554/user=admin_password=***_channel=1_stream=0.sdp"),
    (f"http://h/cgi-bin/snap.cgi/LoginPWD={SECRET}/ch1", "http://h/cgi-bin/snap.cgi/LoginPWD=***"),
    ("rtsp://h/s?pass=SE CRET&ch=1", "rtsp://h/s?pass=***&ch=1"),
    ("rtsp://h/s?channel=1&subtype=0", "rtsp://h/s?channel=1&subtype=0"),
])
def test_vendor_password_parameters_are_redacted(url, shown):
    assert redact_url(url) == shown
    assert redact_text(f"cannot open '{url}': 401") == f"cannot open '{shown}': 401"
