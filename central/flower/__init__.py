"""Flower's SuperLink under the central: the supervised process, its Control API, the `flwr` tool, apps."""
