"""What the control plane and the agent share to serve Prometheus metrics."""
