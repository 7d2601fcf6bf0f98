"""The only code that touches PostgreSQL (and, later, SMTP): activities and the SQL store."""
