"""Gateway engine (Endpoint publication, tunnels, active/passive HA) and route agent."""
