"""Pipeline: governance events from detections and sensor readings; the CLI and workers.

Owns SensorReading, GovernanceEvent, the rule engine, the catalog and routing, and composes the
camera-group configuration from the ingest and detector settings. May import ``ingest`` and
``detectors``; neither of them imports this package.
"""
