"""Kafka / Redis fixtures (owned by the services work)."""
