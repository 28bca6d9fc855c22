"""Spark standalone backend: a real cluster through the master's REST submission API."""
