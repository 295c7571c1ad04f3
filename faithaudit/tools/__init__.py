"""Tool registry and agent replay. Planned: see the tool-use agent audits issue."""
