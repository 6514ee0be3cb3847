"""Adapters: gRPC clients, NATS consumer/publisher, payload models and mappers."""
