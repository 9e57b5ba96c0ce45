"""The control plane's side of the agent protocol (NodeService): registration,
heartbeats, per-node assignment streams, status reports and the log tunnel."""
