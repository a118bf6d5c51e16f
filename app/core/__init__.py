"""Workstation services without Qt: image I/O, inference, history, models, settings, enrolment."""
