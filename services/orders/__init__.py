"""The orders service: a protected downstream API verifying credentials locally."""
