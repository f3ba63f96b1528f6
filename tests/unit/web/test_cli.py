"""``guanjia page``: start-up errors a person sees (the Kafka path is in tests/integration)."""

from __future__ import annotations

from click.testing import CliRunner

from pipeline.web.cli import page


def test_refuses_all_interfaces_without_a_token() -> None:
    result = CliRunner().invoke(page, ["--host", "0.0.0.0"], env={"GUANJIA_PAGE_TOKEN": ""})
    assert result.exit_code == 1
    assert "refusing to serve the risk-map page on 0.0.0.0" in result.output
    assert "GUANJIA_PAGE_TOKEN" in result.output


def test_unreachable_kafka_is_one_clear_line() -> None:
    result = CliRunner().invoke(
        page, ["--port", "0"], env={"GUANJIA_KAFKA_BOOTSTRAP": "user:s3cret@127.0.0.1:1"}
    )
    assert result.exit_code == 1
    assert "cannot reach Kafka at" in result.output and "guanjia services up" in result.output
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(page, ["--help"])
    assert result.exit_code == 0 and "guanjia page --config" in result.output
