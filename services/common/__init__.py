"""The internal library every authscale service imports: verification, problems, settings, observability."""
