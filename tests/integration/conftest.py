"""Fixtures for the integration tests beyond tests/plugins: the secured services (session-wide)."""

from tests.integration.secure_support import secure  # noqa: F401
