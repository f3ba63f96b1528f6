"""Fixtures are split by concern into tests/plugins/*; each file is owned by its area."""

pytest_plugins = [
    "tests.plugins.shared",
    "tests.plugins.services",
    "tests.plugins.rtsp",
]
