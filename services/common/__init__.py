"""The internal library every service imports: verification, problems, settings, observability."""
