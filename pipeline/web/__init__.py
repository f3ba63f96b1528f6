"""The live risk-map page (风险一张图): ``LiveState`` folds records into a snapshot; the aiohttp app serves it."""

from pipeline.web.access import UnsafeBindError, check_bind, is_loopback
from pipeline.web.app import CONTENT_SECURITY_POLICY, PageServer, create_app, start_page
from pipeline.web.state import LiveState

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "LiveState",
    "PageServer",
    "UnsafeBindError",
    "check_bind",
    "create_app",
    "is_loopback",
    "start_page",
]
