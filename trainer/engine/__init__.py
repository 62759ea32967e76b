"""The engine: ``Trainer`` and what it orchestrates (context, optimizer and schedule, the step
cells, launch policy, stop requests, the run directory, data-parallel helpers)."""
