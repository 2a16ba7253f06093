"""The small fleets' drives, built once per session."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sim.fleet import FleetData, make_fleet_data
from tests.sim.harness import SMALL


@pytest.fixture(scope="session")
def data() -> FleetData:
    return make_fleet_data(replace(SMALL, vehicles=5))
