"""CRM use cases: async, one transaction each, returning plain dataclasses."""
