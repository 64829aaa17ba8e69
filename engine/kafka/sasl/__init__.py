"""Kafka SASL authentication (issue 15): the per-connection gate (gate.py) and the PLAIN / SCRAM
logins over the auth slice (login.py; SCRAM's IO-free exchange is engine/auth/scram.py)."""

from streamhouse.kafka.sasl.gate import MECHANISMS, SaslConnection, SaslGate, SaslStateError

__all__ = ["MECHANISMS", "SaslConnection", "SaslGate", "SaslStateError"]
