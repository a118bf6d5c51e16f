"""FedXray central service: enrolment, storage, metrics API, model registry, SuperLink supervision."""

__version__ = "0.1.0"
