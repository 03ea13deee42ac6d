"""Tests of ``c2casgiutils.broadcast``, one file per module (test_processes.py: between real processes)."""
