"""``python -m tests.sim``: run many seeded schedules, or replay one; see :mod:`tests.sim.run`."""

from tests.sim.run import main

raise SystemExit(main())
