"""The relay: a verifying service that only passes a GET down a chain, for the bench's hops."""
