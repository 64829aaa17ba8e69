"""One agent node: the agent service, its jobs and their wiring (engine/node/agent_node.py)."""

from streamhouse.node.agent_node import AgentNode

__all__ = ["AgentNode"]
