"""The swarm round: what a vehicle contributes and how the fleet merges it."""
