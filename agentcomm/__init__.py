"""agentcomm: multi-agent simulation of intent-driven semantic communications.

The core package (channels, topology, beliefs, codecs) imports no RL library.
"""

from __future__ import annotations

__version__ = "0.1.0"
