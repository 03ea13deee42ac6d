"""Implementation of :mod:`c2casgiutils.health_checks`, split into small modules (import the public module)."""
