"""The data plane, written once over small ports; local and remote adapters."""
