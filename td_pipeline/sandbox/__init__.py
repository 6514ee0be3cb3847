"""A local fleet: NATS server, Planning, Context and Ray Executor stand-ins on loopback."""
