"""The page's assets stay offline-safe and XSS-safe by construction (the Chromium test proves it live)."""

from __future__ import annotations

import re
from importlib import resources

import pytest

ASSETS = ("index.html", "app.js", "app.css")


def asset(name: str) -> str:
    return resources.files("pipeline.web").joinpath(name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ASSETS)
def test_assets_ship_with_the_package_and_load_nothing_external(name: str) -> None:
    text = asset(name).replace(
        "http://www.w3.org/2000/svg", ""
    )  # the SVG namespace name is not a fetch
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), (
        "external URL (machines are offline)"
    )
    assert "@import" not in text and "@font-face" not in text


def test_script_never_builds_html_from_strings() -> None:
    js = asset("app.js")
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setTimeout("',
        'setInterval("',
    ):
        assert sink not in js, sink
    assert "textContent" in js


def test_html_has_no_inline_script_style_or_handlers() -> None:
    html = asset("index.html")
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(" src=" in tag for tag in scripts)
    assert re.search(r"<script\b[^>]*>\s*[^<\s]", html) is None, "inline script body"
    assert "<style" not in html
    assert re.search(r"\sstyle=", html) is None
    assert re.search(r"\son[a-z]+=", html) is None
