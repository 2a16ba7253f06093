"""OTA model releases on the vehicle: follow the chain, fetch, verify, install A/B, watch, roll
back (docs/spec/ota-v1.md)."""
