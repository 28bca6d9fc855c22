"""Deterministic fault-schedule simulation of the core (issue 9, "Prove it"); see docs/simulation.md."""
