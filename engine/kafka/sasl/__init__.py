"""Kafka SASL authentication (issue 15): the per-connection gate (gate.py), the PLAIN message
(plain.py) and the logins over the auth slice (login.py; SCRAM's exchange is engine/auth/scram.py)."""

from streamhouse.kafka.sasl.gate import MECHANISMS, SaslConnection, SaslGate, SaslStateError

__all__ = ["MECHANISMS", "SaslConnection", "SaslGate", "SaslStateError"]
