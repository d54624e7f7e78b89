"""The gateway: single entry, reverse proxy, replica balancing and failover, request ids."""
