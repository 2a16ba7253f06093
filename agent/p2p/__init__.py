"""The vehicle's libp2p side: identity, signed announcements, the content store and fetch
protocol, and the host that ties them to GossipSub."""
