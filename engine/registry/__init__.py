"""The Confluent-compatible schema registry front end."""
