"""CRM records, services and intake."""
