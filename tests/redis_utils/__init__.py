"""Tests of ``c2casgiutils.redis_utils``, one file per module of the layer."""
