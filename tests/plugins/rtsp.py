"""RTSP server fixtures (owned by the ingest work)."""
